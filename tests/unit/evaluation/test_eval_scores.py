"""The metric registry: which metrics a run chooses, and what it says about the rest."""

from __future__ import annotations

import pytest

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation import scores


def names(chosen: list[scores.Metric]) -> list[str]:
    return [m.name for m in chosen]


def test_by_default_every_metric_the_inputs_allow_is_chosen_in_registry_order():
    chosen, notes = scores.choose(None, has_reference=True, has_prompts=True)
    assert names(chosen) == ["fad", "kl", "is", "clap"] and notes == []
    chosen, notes = scores.choose(None, has_reference=False, has_prompts=False)
    assert names(chosen) == ["is"]
    assert notes == [
        "FAD and KL skipped: they need --reference DIR.",
        "CLAP score skipped: no prompts found (manifest, sidecars or --prompts).",
    ]


def test_asked_metrics_keep_the_given_order_once_each():
    chosen, notes = scores.choose(("is", "fad", "is"), has_reference=True, has_prompts=False)
    assert names(chosen) == ["is", "fad"] and notes == []


def test_unknown_or_unsatisfiable_metrics_are_usage_errors_naming_what_is_missing():
    with pytest.raises(UsageError, match="Unknown metric.*xyz.*choose from fad, kl, is, clap"):
        scores.choose(("fad", "xyz"), True, True)
    with pytest.raises(UsageError, match="pass --reference DIR"):
        scores.choose(("kl",), has_reference=False, has_prompts=True)
    with pytest.raises(UsageError, match="CLAP score needs the prompts"):
        scores.choose(("clap",), has_reference=True, has_prompts=False)


def test_per_file_columns_come_from_the_metrics_in_the_first_release_order():
    declared = {col for m in scores.METRICS.values() for col in m.columns}
    assert set(scores.PER_FILE_COLUMNS) == declared
    assert scores.PER_FILE_COLUMNS == ("clap_score", "kl_softmax", "kl_sigmoid", "fad_own")


def test_fad_reads_its_embedder_on_both_sets_and_refuses_an_unknown_one():
    from fluxmusic_cli.evaluation.request import EvalRequest

    fad = scores.METRICS["fad"]
    request = EvalRequest(generated=None, fad_embedder="clap")  # type: ignore[arg-type]
    assert fad.needs(request) == (scores.Need("clap", reference=True),)
    with pytest.raises(UsageError, match="vggish, clap"):
        fad.needs(EvalRequest(generated=None, fad_embedder="mfcc"))  # type: ignore[arg-type]
