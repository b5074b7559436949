"""`fluxmusic eval` through Typer's runner (and one subprocess for the exit code)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fluxmusic_cli.cli.app import app
from fluxmusic_cli.errors import UsageError

runner = CliRunner()
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


def test_eval_json_and_per_file_csv_pair_batch_manifest_names(models, tmp_path):
    names = ["alpha", "beta", "gamma"]
    gen = write_set(tmp_path / "gen", names, amp=0.2, manifest=True)
    ref = write_set(tmp_path / "ref", names)
    per_file = tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        [
            "eval",
            str(gen),
            "-r",
            str(ref),
            "--is-splits",
            "1",
            "--json",
            "--per-file",
            str(per_file),
            *models,
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["metrics"]) == {"fad", "kl", "is", "clap"}
    assert doc["generated"]["n"] == 3 and doc["generated"]["sample_rates"] == [16000]
    assert doc["metrics"]["kl"]["n_pairs"] == 3
    rows = list(csv.DictReader(per_file.open()))
    assert [r["id"] for r in rows] == names
    assert all(r["clap_score"] and r["kl_softmax"] for r in rows)


def test_eval_prints_a_table_with_counts_and_warnings(models, tmp_path):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    ref = write_set(tmp_path / "ref", ["a", "b"])
    result = runner.invoke(
        app, ["eval", str(gen), "--reference", str(ref), "--metrics", "fad,kl", *models]
    )
    assert result.exit_code == 0, result.output
    assert "FAD (vggish)" in result.stdout and "KL (softmax)" in result.stdout
    assert "Generated: 2 clips" in result.stdout
    assert "not the published" in result.stderr


def test_missing_pairs_stop_with_the_ids(models, tmp_path):
    gen = write_set(tmp_path / "gen", ["a", "b"])
    ref = write_set(tmp_path / "ref", ["a", "c"])
    result = runner.invoke(app, ["eval", str(gen), "-r", str(ref), "--metrics", "kl", *models])
    assert isinstance(result.exception, UsageError)
    assert "c" in str(result.exception) and "--allow-missing" in str(result.exception)


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
