"""Planning, naming, sharding, the manifest and resuming of folder runs."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from fluxmusic_cli import manifest
from fluxmusic_cli.engine.requests import GenerateSettings
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.manifest import append_manifest, read_manifest
from fluxmusic_cli.prompts import parse_prompts
from fluxmusic_cli.runs import folder as folder_runs
from fluxmusic_cli.runs import service
from fluxmusic_cli.runs.folder import FolderRun, remove_leftovers
from fluxmusic_cli.runs.plan import Settings, forward_batches, parse_shard, plan_batch
from fluxmusic_cli.runs.service import RunService

SETTINGS = Settings(
    clip=GenerateSettings(
        steps=2, guidance=7.0, negative_prompt="low quality", duration=0.32, encoders="both"
    ),
    seed=100,
)


def _plan(text: str, fmt: str = "txt", out_dir=None, shard=None, settings=SETTINGS):
    return plan_batch(parse_prompts(text, fmt), out_dir or "out", settings, shard)


def test_names_come_from_the_name_column_else_a_slug_and_the_row_number():
    plan = _plan("name,prompt\nintro,a\n,Warm Lo-Fi Piano!\nOutro.WAV,c\n", "csv")
    assert [i.name for i in plan.items] == ["intro", "warm-lo-fi-piano-0002", "Outro"]
    assert [i.path.name for i in plan.items] == [
        "intro.wav",
        "warm-lo-fi-piano-0002.wav",
        "Outro.wav",
    ]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../x", "would leave the output folder"),
        ("..", "would leave the output folder"),
        ("sub/clip", "would leave the output folder"),
        ("sub\\clip", "would leave the output folder"),
        ("/etc/passwd", "absolute path"),
        ("C:evil", "on Windows 'C:' names a drive"),
        ("C:\\evil", "absolute path"),
        (".hidden", "hidden file"),
        ("a\x01b", "which Windows does not allow in a file name"),
        ("x" * 201, "longer than 200 bytes"),
    ],
)
def test_a_name_escaping_the_folder_is_refused_for_that_row_only(name, why):
    text = json.dumps({"name": name, "prompt": "p"}) + "\n" + json.dumps({"prompt": "ok"})
    plan = _plan(text, "jsonl")
    assert [i.prompt for i in plan.items] == ["ok"]
    (failure,) = plan.failures
    assert failure.row == 1 and why in failure.reason


def test_duplicate_names_are_made_unique_ignoring_case():
    plan = _plan("name,prompt\nx,a\nX,b\nx,c\nx-2,d\n", "csv")
    assert [i.name for i in plan.items] == ["x", "X-2", "x-3", "x-2-2"]


def test_seeds_and_overrides_per_row():
    text = "prompt,seed,steps,guidance,duration,negative_prompt\na,,,,,\nb,5,3,2.5,1.0,hiss\n"
    a, b = _plan(text, "csv").items

    def fields(item):
        s = item.settings
        return item.seed, s.steps, s.guidance, s.duration, s.negative_prompt

    assert fields(a) == (100, 2, 7.0, 0.32, "low quality")
    assert fields(b) == (5, 3, 2.5, 1.0, "hiss")
    assert _plan("x\ny\nz\n").items[2].seed == 102  # base seed + row - 1


def test_an_item_holds_the_command_clip_settings_with_its_row_columns_in_their_place():
    a, b = _plan("prompt,steps\na,\nb,3\n", "csv").items
    assert a.settings == SETTINGS.clip and a.settings.encoders == "both"
    assert b.settings == replace(SETTINGS.clip, steps=3)
    assert (a.row, b.row) == (a.index + 1, b.index + 1) == (1, 2)
    assert a.group != b.group and a.group == _plan("c\n").items[0].group


def test_two_shards_split_a_list_into_disjoint_halves():
    text = "\n".join(f"prompt {i}" for i in range(6))
    first, second = (_plan(text, shard=parse_shard(f"{k}/2")) for k in (0, 1))
    assert [i.row for i in first.items] == [1, 3, 5]
    assert [i.row for i in second.items] == [2, 4, 6]
    names = {i.name for i in first.items} | {i.name for i in second.items}
    assert len(names) == 6 and first.total == second.total == 6


def test_a_bad_row_is_reported_by_the_shard_that_owns_it():
    text = '{"prompt": "a"}\n{"prompt": ""}\n{"prompt": "c"}\n{"prompt": "d"}\n'
    first, second = (_plan(text, "jsonl", shard=parse_shard(f"{k}/2")) for k in (0, 1))
    assert [f.row for f in first.failures] == [] and [f.row for f in second.failures] == [2]


@pytest.mark.parametrize("text", ["2/2", "-1/3", "1", "a/b", "1/0", "0/2/3"])
def test_bad_shard_specs_are_usage_errors(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_forward_batches_group_shared_settings_and_respect_the_size():
    text = "prompt,guidance\na,\nb,2\nc,\nd,\ne,2\n"
    batches = forward_batches(_plan(text, "csv").items, 2)
    assert [[i.prompt for i in b] for b in batches] == [["a", "c"], ["d"], ["b", "e"]]


def _entry(name: str, size: int) -> dict:
    return {"name": name, "path": f"{name}.wav", "bytes": size, "tool": "fluxmusic"}


def test_manifest_survives_a_line_cut_short_by_a_killed_process(tmp_path):
    append_manifest(tmp_path, _entry("a", 1))
    with open(tmp_path / manifest.MANIFEST, "a") as f:
        f.write('{"name": "b", "byt')  # what a kill mid-write leaves
    append_manifest(tmp_path, _entry("c", 3))
    append_manifest(tmp_path, _entry("a", 4))
    entries = read_manifest(tmp_path)
    assert set(entries) == {"a", "c"}
    assert entries["a"]["bytes"] == 4  # the last line of a name wins
    lines = (tmp_path / manifest.MANIFEST).read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[2]) == _entry("c", 3)
    assert manifest.repair(tmp_path)  # the line cut short is ours: dropped, the rest kept
    kept = (tmp_path / manifest.MANIFEST).read_text().splitlines()
    assert [json.loads(line)["bytes"] for line in kept] == [1, 3, 4]


@pytest.mark.parametrize(
    "theirs",
    [
        '{"name": "take1", "path": "take1.wav"}\n',  # JSON, but not one of the tool's records
        "my notes\n",
        "[1, 2]\n",
        '{"tak',  # cut short, but not a line the tool writes
    ],
)
def test_a_manifest_with_lines_the_tool_did_not_write_is_not_rewritten(tmp_path, theirs):
    path = tmp_path / manifest.MANIFEST
    path.write_text(json.dumps(_entry("a", 1)) + "\n" + theirs)
    with pytest.raises(UsageError, match="not written by fluxmusic.*--force"):
        manifest.check_ours(tmp_path, force=False)
    with pytest.raises(UsageError, match="not written by fluxmusic"):
        manifest.repair(tmp_path)
    assert path.read_text() == json.dumps(_entry("a", 1)) + "\n" + theirs
    assert manifest.repair(tmp_path, force=True)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [_entry("a", 1)]


def test_only_leftovers_of_this_plan_whose_writer_is_gone_are_removed(tmp_path):
    import subprocess
    import sys

    from fluxmusic_cli import atomic

    plan = _plan("mine\n", out_dir=tmp_path)
    (name,) = [i.name for i in plan.items]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    def temp_of(final: str, pid: str) -> Path:
        own = atomic.temp_path(tmp_path / final)
        return own.with_name(own.name.replace(f".{os.getpid()}-", f".{pid}-"))

    ours = [temp_of(f"{name}.wav", gone), temp_of(f"{name}.json", gone)]
    living = [atomic.temp_path(tmp_path / f"{name}.wav")]  # this process: alive
    theirs = [temp_of("other-0001.wav", gone), tmp_path / f"{name}.wav"]
    for p in ours + living + theirs:
        p.write_bytes(b"x")
    assert sorted(remove_leftovers(plan)) == sorted(ours)
    assert all(p.exists() for p in living + theirs) and not any(p.exists() for p in ours)


@pytest.fixture
def engine(tiny_bundle):
    from fluxmusic_cli.engine.pipeline import Engine

    return Engine(tiny_bundle.engine_options())


def test_each_distinct_prompt_is_encoded_once_and_models_load_once(
    tiny_bundle, tmp_path, load_counts, encoder_work
):
    from fluxmusic_cli.engine.pipeline import Engine

    engine = Engine(tiny_bundle.engine_options())
    text = "piano\ndrums\npiano\nflute\ndrums\npiano\n"
    plan = _plan(text, out_dir=tmp_path / "out")
    runner = FolderRun(folder_runs.engine_identity(engine), plan)
    todo = runner.prepare().todo
    summary = runner.run(RunService(engine, batch_size=2), todo)
    assert len(summary.done) == 6 and not summary.failed
    # piano, drums, flute and the negative prompt: four texts, each through each encoder once.
    assert encoder_work.prompts_encoded == {"t5": 4, "clap": 4}
    assert encoder_work.loads == {"t5": 1, "clap": 1}
    assert load_counts == {"transformer": 1, "decoder": 1}
    entries = read_manifest(plan.out_dir)
    assert sorted(entries) == sorted(i.name for i in plan.items)
    for item in plan.items:
        entry = entries[item.name]
        assert entry["path"] == item.path.name and entry["seed"] == item.seed
        assert entry["bytes"] == item.path.stat().st_size
        assert (plan.out_dir / f"{item.name}.json").is_file()

    # A rerun finds everything finished; a file that shrank since is made again.
    shrunk = plan.items[1]
    shrunk.path.write_bytes(b"RIFF")
    again = FolderRun(folder_runs.engine_identity(engine), plan).prepare()
    assert [i.name for i in again.todo] == [shrunk.name]
    assert len(again.finished) == 5


def test_files_made_otherwise_are_conflicts_unless_forced_and_orphans_are_adopted(engine, tmp_path):
    out = tmp_path / "out"
    plan = _plan("alpha\nbeta\n", out_dir=out)
    runner = FolderRun(folder_runs.engine_identity(engine), plan)
    runner.run(RunService(engine, batch_size=2), runner.prepare().todo)

    # The same names asked with another seed: refused without --force, remade with it.
    other = _plan("alpha\nbeta\n", out_dir=out, settings=replace(SETTINGS, seed=7))
    identity = folder_runs.engine_identity(engine)
    sorted_ = folder_runs.sort_items(other, identity, force=False)
    assert [f.row for f in sorted_.conflicts] == [1, 2]
    assert (
        "seed 100 -> 7" in sorted_.conflicts[0].reason and "--force" in sorted_.conflicts[0].reason
    )
    assert len(folder_runs.sort_items(other, identity, force=True).todo) == 2

    # A clip whose manifest line was lost (killed between rename and append) is adopted.
    (out / manifest.MANIFEST).unlink()
    sorted_ = folder_runs.sort_items(plan, identity, force=False)
    assert [i.name for i, _ in sorted_.adopted] == [i.name for i in plan.items]
    # A file of ours with no record beside it is not.
    (out / f"{plan.items[0].name}.json").unlink()
    sorted_ = folder_runs.sort_items(plan, identity, force=False)
    assert [f.row for f in sorted_.conflicts] == [1]
    assert "not in the manifest" in sorted_.conflicts[0].reason


def test_a_folder_written_before_records_had_a_schema_resumes_as_finished(engine, tmp_path):
    out = tmp_path / "out"
    plan = _plan("alpha\nbeta\n", out_dir=out)
    runner = FolderRun(folder_runs.engine_identity(engine), plan)
    runner.run(RunService(engine), runner.prepare().todo)
    lines = [json.loads(line) for line in (out / manifest.MANIFEST).read_text().splitlines()]
    assert all(line.pop("schema") == 2 for line in lines)
    (out / manifest.MANIFEST).write_text("".join(json.dumps(line) + "\n" for line in lines))
    for item in plan.items:
        side = out / f"{item.name}.json"
        old = json.loads(side.read_text())
        del old["schema"]
        side.write_text(json.dumps(old))
    identity = folder_runs.engine_identity(engine)
    sorted_ = folder_runs.sort_items(plan, identity, force=False)
    assert len(sorted_.finished) == 2 and not sorted_.todo and not sorted_.conflicts
    (out / manifest.MANIFEST).unlink()  # and its clips are adopted from their sidecars
    sorted_ = folder_runs.sort_items(plan, identity, force=False)
    assert [i.name for i, _ in sorted_.adopted] == [i.name for i in plan.items]
    assert all(entry["seed"] == item.seed for item, entry in sorted_.adopted)


def test_long_lists_are_encoded_window_by_window_without_encoding_twice(
    engine, tmp_path, monkeypatch, encoder_work
):
    from fluxmusic_cli.engine.conditioning import TextConditioner

    asked: list[str] = []  # prompts the engine asks its conditioner for
    encode = TextConditioner.encode

    def spy(self, prompts, *args, **kwargs):
        asked.extend(p for p in prompts if p)
        return encode(self, prompts, *args, **kwargs)

    monkeypatch.setattr(TextConditioner, "encode", spy)
    monkeypatch.setattr(service, "ENCODE_WINDOW", 2)
    plan = _plan("piano\ndrums\npiano\nflute\ndrums\n", out_dir=tmp_path / "out")
    runner = FolderRun(folder_runs.engine_identity(engine), plan)
    summary = runner.run(RunService(engine), runner.prepare().todo)
    assert len(summary.done) == 5 and not summary.failed
    # Prompts leave memory after their window: a repeat in a later window is asked for again,
    # and comes back from the disk cache instead of being encoded twice.
    assert (asked.count("piano"), asked.count("drums"), asked.count("flute")) == (2, 2, 1)
    assert encoder_work.prompts_encoded == {"t5": 4, "clap": 4}
