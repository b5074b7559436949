"""What a user types for a component becomes a ref: a local path, a registered name, a repo id."""

from __future__ import annotations

import pytest

from fluxmusic_cli.engine import registry
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, parse_ref
from fluxmusic_cli.errors import UsageError


def test_an_existing_path_is_local_and_named_by_its_resolved_path(tmp_path, monkeypatch):
    (tmp_path / "my-t5").mkdir()
    monkeypatch.chdir(tmp_path)
    ref = parse_ref("t5", "my-t5")
    assert ref.path == tmp_path / "my-t5" and ref.hub is None
    assert ref.identity == f"local:{tmp_path / 'my-t5'}" and ref.revision == "local"


def test_something_that_looks_like_a_path_must_exist(tmp_path):
    with pytest.raises(UsageError, match="No such file or directory for the transformer"):
        parse_ref("transformer", str(tmp_path / "missing.safetensors"))
    with pytest.raises(UsageError, match="Empty source"):
        parse_ref("clap", "  ")


def test_variant_names_and_t5_aliases_resolve_through_the_registry():
    ref = parse_ref("transformer", "Giant_Full")
    assert ref.variant is registry.VARIANTS["giant-full"]
    assert ref.identity == "hub:feizhengcong/FluxMusic/musicflow_g_full.pt@main"
    assert parse_ref("t5", "sd3").hub is registry.T5_SOURCES["t5-sd3"]
    assert parse_ref("t5", "default").hub is registry.T5_SOURCES["t5-city96"]
    assert parse_ref("clap", registry.CLAP.repo_id).hub is registry.CLAP


def test_any_other_repo_id_keeps_the_registered_file_list_and_takes_a_revision():
    ref = parse_ref("audioldm2", "someone/audioldm2-copy", revision="v2")
    assert ref.hub is not None and ref.hub.repo_id == "someone/audioldm2-copy"
    assert ref.hub.files == registry.AUDIOLDM2.files
    assert ref.identity == "hub:someone/audioldm2-copy@v2" and ref.revision == "v2"
    other_t5 = parse_ref("t5", "someone/t5-xxl")
    assert other_t5.hub is not None and other_t5.hub.aliases == ()
    assert other_t5.hub.files == registry.T5_SOURCES[registry.DEFAULT_T5].files


def test_a_bare_word_that_is_no_registered_name_is_refused():
    with pytest.raises(UsageError, match="neither a local path nor a hub repo id"):
        parse_ref("clap", "larger_clap_music")
    with pytest.raises(UsageError, match="Known variants: small, base"):
        parse_ref("transformer", "medium")


def test_the_defaults_parse_for_every_kind():
    for kind, value in DEFAULT_SOURCES.items():
        ref = parse_ref(kind, value)
        assert ref.kind == kind and ref.path is None
