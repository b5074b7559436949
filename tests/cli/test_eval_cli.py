"""`fluxmusic eval` through the console entry point (and one subprocess for the torch check)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

SR = 16_000


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14, write_tiny_vggish
    from fluxmusic_cli.tinybundle.text import write_tiny_clap

    root = tmp_path_factory.mktemp("eval-cli-models")
    return [
        "--vggish-weights",
        str(write_tiny_vggish(root / "v.pth")),
        "--panns-weights",
        str(write_tiny_cnn14(root / "c.pth")),
        "--clap-model",
        str(write_tiny_clap(root / "clap")),
    ]


def write_set(folder, names, amp=0.3, manifest=False):
    folder.mkdir()
    t = np.arange(int(1.5 * SR)) / SR
    rows = []
    for i, name in enumerate(names):
        sf.write(
            folder / f"{i:04d}.wav" if manifest else folder / f"{name}.wav",
            amp * np.sin(2 * np.pi * 300 * (i + 1) * t),
            SR,
        )
        rows.append({"path": f"{i:04d}.wav", "name": name, "prompt": f"tone number {i}"})
    if manifest:
        (folder / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_eval_json_and_per_file_csv_pair_batch_manifest_names(models, tmp_path, run_cli):
    names = ["alpha", "beta", "gamma"]
    gen = write_set(tmp_path / "gen", names, amp=0.2, manifest=True)
    ref = write_set(tmp_path / "ref", names)
    per_file = tmp_path / "scores.csv"
    code, out, err = run_cli(
        [
            "eval",
            str(gen),
            "--reference",
            str(ref),
            "--is-splits",
            "1",
            "--json",
            "--per-file",
            str(per_file),
            *models,
        ]
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["metrics"]) == {"fad", "kl", "is", "clap"}
    assert doc["generated"]["n"] == 3 and doc["generated"]["sample_rates"] == [16000]
    assert doc["metrics"]["kl"]["n_pairs"] == 3
    rows = list(csv.DictReader(per_file.open()))
    assert [r["id"] for r in rows] == names
    assert all(r["clap_score"] and r["kl_softmax"] for r in rows)


def test_eval_prints_a_table_with_counts_and_warnings(models, tmp_path, run_cli):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    ref = write_set(tmp_path / "ref", ["a", "b"])
    code, out, err = run_cli(
        ["eval", str(gen), "--reference", str(ref), "--metrics", "fad,kl", *models]
    )
    assert code == 0, err
    assert "FAD (vggish)" in out and "KL (softmax)" in out
    assert "Generated: 2 clips" in out
    assert "not the published" in err


def test_missing_pairs_stop_with_the_ids(models, tmp_path, run_cli):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    ref = write_set(tmp_path / "ref", ["a", "c"])
    args = ["eval", str(gen), "--reference", str(ref), "--metrics", "kl", *models]
    code, out, err = run_cli(args)
    assert code == 2  # a UsageError
    assert "c" in err and "--allow-missing" in err
    assert out == ""


def test_quiet_keeps_the_scores_and_warnings_but_drops_the_notes(models, tmp_path, run_cli):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    per_file = tmp_path / "scores.csv"
    args = ["eval", str(gen), "--is-splits", "1", "--per-file", str(per_file), *models]
    code, out, err = run_cli(args)
    assert code == 0, err
    assert "note:" in err and "Per-file scores written" in err
    code, out, err = run_cli([*args, "--quiet", "--device", "auto", "--force"])
    assert code == 0, err
    assert "IS" in out and "Generated: 2 clips" in out
    assert "not the published" in err  # warnings stay
    assert "note:" not in err and "Per-file scores" not in err


def test_eval_takes_the_shared_device_choices(models, tmp_path, run_cli):
    gen = write_set(tmp_path / "gen", ["a"])
    code, _, err = run_cli(["eval", str(gen), "--device", "tpu", *models])
    assert code == 2
    assert "auto" in err and "cuda" in err


def test_console_script_exits_2_for_a_usage_error_without_importing_torch(tmp_path):
    gen = write_set(tmp_path / "gen", ["a"])
    code = (
        "import sys; sys.argv = ['fluxmusic', 'eval', sys.argv[1], '--metrics', 'fad'];"
        "from fluxmusic_cli.cli.app import main\n"
        "try:\n    main()\nfinally:\n    print('torch' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(gen)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "--reference" in proc.stderr
    assert proc.stderr.strip().endswith("False")


def test_a_metric_added_to_the_registry_is_computed_and_rendered(
    models, tmp_path, run_cli, monkeypatch
):
    import numpy as np

    from fluxmusic_cli.evaluation import scores

    def loudest(s: scores.Scoring) -> scores.Scored:
        peaks = [float(np.abs(s.gen["panns"][c.id]["logits"]).max()) for c in s.generated]
        return scores.Scored(results={"loudest": {"value": max(peaks), "n": len(peaks)}})

    metric = scores.Metric(
        "loudest",
        "Loudest logit",
        lambda request: (scores.Need("panns"),),
        loudest,
        lambda m: [("Loudest logit", f"{m['loudest']['value']:.2f}", f"{m['loudest']['n']} clips")],
    )
    monkeypatch.setitem(scores.METRICS, "loudest", metric)
    gen = write_set(tmp_path / "gen", ["a", "b"])
    code, out, err = run_cli(
        ["eval", str(gen), "--metrics", "loudest,is", "--is-splits", "1", *models]
    )
    assert code == 0, err
    row = next(line for line in out.splitlines() if "Loudest logit" in line)
    assert "2 clips" in row and "IS" in out
    code, out, err = run_cli(["eval", str(gen), "--metrics", "loudest", "--json", *models])
    doc = json.loads(out)
    assert set(doc["metrics"]) == {"loudest"} and doc["metrics"]["loudest"]["n"] == 2
    assert list(doc["cache"]) == ["panns-cnn14-16k"]  # only the embedder it declared


def test_a_random_bytes_mp3_is_called_not_audio_not_a_pipe(models, tmp_path, run_cli):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    (gen / "junk.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    code, out, err = run_cli(["eval", str(gen), "--metrics", "is", *models])
    assert code == 2 and "junk.mp3" in err and "pipe" not in err and "Traceback" not in err
    assert out == ""
