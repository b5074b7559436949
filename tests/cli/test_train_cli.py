"""`fluxmusic train` end to end on the tiny bundle, and its adapters used by `generate`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

# One thread: on a shared 2-core machine two threads per process run several times slower.
CPU = ["--device", "cpu", "--dtype", "fp32", "--threads", "1"]
GEN = [*CPU, "--steps", "3", "--duration", "0.96", "--seed", "4"]
CAPTIONS = {"drone": "a low drone", "bell": "a bright bell", "noise": "soft pink noise"}


def write_music(folder: Path, seconds: float = 2.0) -> Path:
    """Three captioned synthetic clips, one without a caption, one silent, one not audio."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    clips = {
        "drone": 0.4 * np.sin(2 * np.pi * 110 * t),
        "bell": 0.5 * np.sin(2 * np.pi * 880 * t) * np.exp(-3 * t),
        "noise": 0.1 * rng.standard_normal(t.size),
    }
    for name, x in clips.items():
        sf.write(folder / f"{name}.wav", x, 16000)
        (folder / f"{name}.txt").write_text(CAPTIONS[name] + "\n")
    sf.write(folder / "uncaptioned.wav", clips["drone"], 16000)
    sf.write(folder / "silent.flac", np.zeros(16000), 16000)
    (folder / "silent.txt").write_text("nothing")
    (folder / "broken.mp3").write_bytes(b"this is not audio")
    (folder / "broken.txt").write_text("a broken file")
    return folder


def call(args: list[str]) -> tuple[int, str, str]:
    """The console entry point in-process (for module-scoped fixtures, which cannot use
    capsys)."""
    from fluxmusic_cli.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["fluxmusic", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tiny_bundle, tmp_path_factory):
    """One 40-step LoRA run over the synthetic folder, with --json (shared by the tests)."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLUXMUSIC_CACHE", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        data = write_music(root / "music")
        run = root / "run"
        code, out, err = call(
            ["train", str(data), "-o", str(run), *tiny_bundle.cli_args(), *CPU,
             "--steps", "40", "--lr", "3e-3", "--lora-rank", "4", "--save-every", "20",
             "--seed", "1", "--json"]
        )  # fmt: skip
    assert code == 0, err
    return {"run": run, "data": data, "out": out, "err": err}


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_training_lowers_the_loss_and_reports_each_step_as_json(trained):
    evs = events(trained["out"])
    steps = [e for e in evs if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 41))
    assert all(e["lr"] == 3e-3 and e["loss"] > 0 for e in steps)
    first = sum(e["loss"] for e in steps[:10]) / 10
    last = sum(e["loss"] for e in steps[-10:]) / 10
    assert last < 0.9 * first
    kinds = [e["event"] for e in evs]
    assert kinds.count("checkpoint") == 2 and kinds[-1] == "summary"
    summary = evs[-1]["record"]
    assert summary["loss_first10"] == pytest.approx(first)
    assert summary["loss_last10"] == pytest.approx(last)


def test_unusable_files_are_listed_and_skipped(trained):
    said = " ".join(trained["err"].split())  # the console wraps long lines
    music = trained["data"]
    for name, why in [("uncaptioned.wav", "no caption"), ("silent.flac", "is silent"),
                      ("broken.mp3", "no audio in it")]:  # fmt: skip
        assert f"skipped {music / name}: " in said
        assert why in said.split(f"skipped {music / name}: ")[1].split("warning:")[0]
    record = json.loads((trained["run"] / "run.json").read_text())
    assert record["data"]["tracks"] == 3 and record["data"]["segments"] == 3
    assert len(record["data"]["skipped"]) == 3


def test_the_run_folder_holds_the_adapter_its_record_checkpoints_and_loss_plot(
    trained, tiny_bundle
):
    run = trained["run"]
    record = json.loads((run / "lora.json").read_text())
    assert record["kind"] == "lora" and record["status"] == "finished" and record["step"] == 40
    assert record["base_model"]["file"] == str(tiny_bundle.model)
    assert len(record["base_model"]["sha256"]) == 64
    assert record["settings"]["lora_rank"] == 4 and record["settings"]["seed"] == 1
    assert record["output"]["file"] == str(run / "lora.safetensors")
    tensors = load_file(str(run / "lora.safetensors"))
    assert tensors and all(k.startswith("transformer.") and ".lora_" in k for k in tensors)
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-000020", "step-000040"
    ]  # fmt: skip
    assert {p.name for p in (run / "data").iterdir()} >= {"data.json", "latents.safetensors"}


def test_lora_at_scale_zero_is_the_base_model_and_at_scale_one_is_not(
    trained, run_cli, tiny_bundle, tmp_path
):
    adapter = str(trained["run"] / "lora.safetensors")
    outs = {}
    for name, extra in [("base", []), ("zero", ["--lora", f"{adapter}:0"]),
                        ("one", ["--lora", adapter])]:  # fmt: skip
        path = tmp_path / f"{name}.wav"
        code, _, err = run_cli(
            ["generate", "a low drone", *tiny_bundle.cli_args(), *GEN, "-o", str(path), *extra]
        )
        assert code == 0, err
        outs[name] = sf.read(path, dtype="float32")[0]
    assert np.array_equal(outs["zero"], outs["base"])
    assert not np.allclose(outs["one"], outs["base"], atol=1e-6)


def test_the_record_keeps_each_lora_and_replays_it(trained, run_cli, tiny_bundle, tmp_path):
    adapter = trained["run"] / "lora.safetensors"
    first = tmp_path / "first.wav"
    code, _, err = run_cli(
        ["generate", "a bright bell", *tiny_bundle.cli_args(), *GEN, "-o", str(first),
         "--lora", f"{adapter}:0.5"]
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(first.with_suffix(".json").read_text())
    digest = json.loads((trained["run"] / "lora.json").read_text())["output"]["sha256"]
    assert record["loras"] == [{"file": str(adapter), "sha256": digest, "scale": 0.5}]
    again = tmp_path / "again.wav"
    code, _, err = run_cli(
        [
            "generate",
            "--from-record",
            str(first.with_suffix(".json")),
            "-o",
            str(again),
            "--threads",
            "1",
        ]  # fmt: skip
    )
    assert code == 0, err
    assert json.loads(again.with_suffix(".json").read_text())["loras"] == record["loras"]
    assert np.array_equal(sf.read(again)[0], sf.read(first)[0])


def test_an_edit_made_with_a_lora_replays_it(trained, run_cli, tiny_bundle, tmp_path):
    adapter = trained["run"] / "lora.safetensors"
    source = tmp_path / "source.wav"
    code, _, err = run_cli(["generate", "a low drone", *tiny_bundle.cli_args(), *GEN,
                            "-o", str(source)])  # fmt: skip
    assert code == 0, err
    first = tmp_path / "remix.wav"
    code, _, err = run_cli(
        ["remix", str(source), "a bright bell", *tiny_bundle.cli_args(), *CPU, "--steps", "3",
         "--seed", "4", "-o", str(first), "--lora", f"{adapter}:0.5"]
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(first.with_suffix(".json").read_text())
    assert record["loras"][0]["scale"] == 0.5
    again = tmp_path / "again.wav"
    code, _, err = run_cli(
        ["remix", "--from-record", str(first.with_suffix(".json")), "-o", str(again),
         "--threads", "1"]
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(again.with_suffix(".json").read_text())["loras"] == record["loras"]
    assert np.array_equal(sf.read(again)[0], sf.read(first)[0])


def test_a_lora_for_another_model_width_exits_3(trained, run_cli, tiny_bundle, tmp_path):
    from fluxmusic_cli.tinybundle.transformer import write_tiny_fluxmusic

    wider = write_tiny_fluxmusic(
        tmp_path / "wider.pt", context_in_dim=32, vec_in_dim=32, hidden=128, num_heads=4
    )
    args = tiny_bundle.cli_args()
    args[args.index("--model") + 1] = str(wider)
    code, _, err = run_cli(
        ["generate", "x", *args, *GEN, "-o", str(tmp_path / "x.wav"),
         "--lora", str(trained["run"] / "lora.safetensors")]
    )  # fmt: skip
    assert code == 3 and "Traceback" not in err
    said = " ".join(err.split())
    assert "trained on a 64-wide model; this one is 128 wide" in said
    assert "has 64 inputs where this model's has 128 and 64 outputs where this model's has 128" in (
        said
    )
    assert not (tmp_path / "x.wav").exists()


def _rewrite_lora(source: Path, target: Path, change) -> Path:
    """A copy of the adapter `source` with `change(name, tensor)` applied to each tensor, its
    metadata (the peft config and the training info) kept."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as fh:
        metadata = fh.metadata()
        tensors = {k: change(k, fh.get_tensor(k)) for k in fh.keys()}  # noqa: SIM118
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_a_width_error_names_the_dimension_that_differs_not_a_width_it_shares(
    trained, run_cli, tiny_bundle, tmp_path
):
    """An adapter whose record says 64 wide but whose tensors are 128 wide: the message names
    what differs (the layers' inputs and outputs), never "trained for a 64-wide model; this
    model is 64 wide"."""

    def widen(name, t):
        return t.repeat(1, 2) if ".lora_A." in name else t.repeat(2, 1)  # (r, 2 in), (2 out, r)

    odd = _rewrite_lora(trained["run"] / "lora.safetensors", tmp_path / "odd.safetensors", widen)
    code, _, err = run_cli(
        ["generate", "x", *tiny_bundle.cli_args(), *GEN, "-o", str(tmp_path / "x.wav"),
         "--lora", str(odd)]
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 3 and "Traceback" not in err
    assert "this model is 64 wide" not in said and "64-wide" not in said
    assert "has 128 inputs where this model's has 64 and 128 outputs where this model's has 64" in (
        said
    )
    assert not (tmp_path / "x.wav").exists()


def test_a_lora_holding_nan_is_refused_with_exit_3_naming_the_file(
    trained, run_cli, tiny_bundle, tmp_path
):
    def poison(name, t):
        if ".lora_B." in name:
            t = t.clone()
            t.view(-1)[0] = float("nan")
        return t

    bad = _rewrite_lora(trained["run"] / "lora.safetensors", tmp_path / "nan.safetensors", poison)
    code, _, err = run_cli(
        ["generate", "x", *tiny_bundle.cli_args(), *GEN, "-o", str(tmp_path / "x.wav"),
         "--lora", str(bad)]
    )  # fmt: skip
    said = " ".join(err.split())
    assert code == 3 and "Traceback" not in err
    assert str(bad) in said and "NaN or infinite values" in said
    assert not (tmp_path / "x.wav").exists()


def test_a_lora_scale_that_is_not_a_number_exits_2(run_cli, tiny_bundle, tmp_path):
    code, _, err = run_cli(
        ["generate", "x", *tiny_bundle.cli_args(), *GEN, "-o", str(tmp_path / "x.wav"),
         "--lora", "some.safetensors:loud"]
    )  # fmt: skip
    assert code == 2 and "not a number" in err


def test_a_folder_holding_a_run_is_refused_without_resume_or_force(trained, run_cli):
    code, _, err = run_cli(["train", str(trained["data"]), "-o", str(trained["run"])])
    assert code == 2 and "--resume" in err and "--force" in err


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [("uncaptioned", [], "no usable recording with a caption"),
     ("empty", [], "holds no audio files"),
     ("ok", ["--resume"], "holds no checkpoint"),
     ("ok", ["--sample-every", "5"], "--sample-prompt"),
     ("ok", ["--latents", "median"], "median")],
)  # fmt: skip
def test_bad_training_input_exits_2_with_a_sentence(
    run_cli, tiny_bundle, tmp_path, setup, extra, message
):
    data = tmp_path / "data"
    data.mkdir()
    if setup == "uncaptioned":
        sf.write(data / "a.wav", 0.3 * np.ones(16000), 16000)
    elif setup == "ok":
        write_music(data)
    code, _, err = run_cli(
        ["train", str(data), "-o", str(tmp_path / "run"), *tiny_bundle.cli_args(), *CPU,
         "--steps", "1", *extra]
    )  # fmt: skip
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_a_resumed_run_equals_an_uninterrupted_one(run_cli, tiny_bundle, tmp_path):
    data = write_music(tmp_path / "music", seconds=1.0)
    common = [*tiny_bundle.cli_args(), *CPU, "--lora-rank", "2", "--lr", "1e-3", "-q"]
    code, _, err = run_cli(["train", str(data), "-o", str(tmp_path / "whole"), *common,
                            "--steps", "6", "--save-every", "3"])  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["train", str(data), "-o", str(tmp_path / "split"), *common,
                            "--steps", "3"])  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(["train", str(data), "-o", str(tmp_path / "split"), *common,
                            "--steps", "6", "--resume"])  # fmt: skip
    assert code == 0, err
    whole = load_file(str(tmp_path / "whole" / "lora.safetensors"))
    split = load_file(str(tmp_path / "split" / "lora.safetensors"))
    assert whole.keys() == split.keys()
    assert all(torch.equal(whole[k], split[k]) for k in whole)
    losses = [
        json.loads((tmp_path / d / "checkpoints" / "step-000006" / "state.json").read_text())[
            "losses"
        ]
        for d in ("whole", "split")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    # Resuming with another setting that shapes the run is refused.
    code, _, err = run_cli(["train", str(data), "-o", str(tmp_path / "split"), *common,
                            "--steps", "8", "--resume", "--seed", "9"])  # fmt: skip
    assert code == 2 and "seed" in err


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_finishes(
    run_cli, tiny_bundle, tmp_path, monkeypatch
):
    from fluxmusic_cli.training.loop import Trainer

    real_step = Trainer.train_step
    calls = {"n": 0}

    def pressed_after_step_3(self):
        loss = real_step(self)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what the user's Ctrl-C raises, right after step 3
        return loss

    monkeypatch.setattr(Trainer, "train_step", pressed_after_step_3)
    data = write_music(tmp_path / "music", seconds=1.0)
    common = [str(data), "-o", str(tmp_path / "run"), *tiny_bundle.cli_args(), *CPU,
              "--lora-rank", "2", "--steps", "5", "-q"]  # fmt: skip
    code, _, err = run_cli(["train", *common])
    assert code == 130 and "--resume" in err
    assert (tmp_path / "run" / "checkpoints" / "step-000003" / "state.json").is_file()
    assert not (tmp_path / "run" / "lora.safetensors").exists()
    code, _, err = run_cli(["train", *common, "--resume"])
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "lora.json").read_text())["step"] == 5


def test_a_full_fine_tune_loads_with_model(run_cli, tiny_bundle, tmp_path):
    data = write_music(tmp_path / "music", seconds=1.0)
    run = tmp_path / "full"
    code, _, err = run_cli(["train", str(data), "-o", str(run), *tiny_bundle.cli_args(), *CPU,
                            "--full", "--steps", "2", "--lr", "1e-3", "-q"])  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "model.json").read_text())["kind"] == "full"
    outs = []
    for model in (str(tiny_bundle.model), str(run / "model.safetensors")):
        args = tiny_bundle.cli_args()
        args[args.index("--model") + 1] = model
        path = tmp_path / f"{len(outs)}.wav"
        code, _, err = run_cli(["generate", "a low drone", *args, *GEN, "-o", str(path)])
        assert code == 0, err
        outs.append(sf.read(path)[0])
    assert not np.allclose(outs[0], outs[1], atol=1e-6)


def test_caption_dropout_draws_the_stored_empty_embeddings_at_its_rate(trained, tiny_bundle):
    from fluxmusic_cli.engine.pipeline import Engine
    from fluxmusic_cli.training.loop import TrainSettings, draw_batch
    from fluxmusic_cli.training.prepare import load

    data = load(trained["run"] / "data")
    stored = Engine(tiny_bundle.engine_options(threads=1)).conditioner()
    assert torch.equal(data.empty_txt, stored.empty_embedding("t5").float())
    assert torch.equal(data.empty_y, stored.empty_embedding("clap").float())
    # Two latent frames are enough here: the draws under test do not depend on the length.
    data = dataclasses.replace(data, mean=data.mean[:, :, :2], logvar=data.logvar[:, :, :2])
    n, rate = 6000, 0.25
    batch = draw_batch(data, TrainSettings(caption_dropout=rate, seed=3), 1, 0, n)
    t5, clap = batch.dropped_t5, batch.dropped_clap
    for dropped in (t5, clap):
        assert abs(dropped.float().mean().item() - rate) < 0.025
    assert abs((t5 & clap).float().mean().item() - rate * rate) < 0.02  # independent
    rows = data.caption[batch.indices]
    assert torch.equal(batch.txt[t5], data.empty_txt.expand(int(t5.sum()), -1, -1))
    assert torch.equal(batch.txt[~t5], data.txt[rows[~t5]])
    assert torch.equal(batch.y[clap], data.empty_y.expand(int(clap.sum()), -1))
    assert torch.equal(batch.y[~clap], data.y[rows[~clap]])
    assert batch.t.min() > 0 and batch.t.max() < 1
    assert abs(batch.t.median().item() - 0.5) < 0.03  # logit-normal: sigmoid of N(0, 1)


def test_overfitting_one_clip_brings_generate_close_to_its_latent(run_cli, tiny_bundle, tmp_path):
    """The objective and the data path are right: 300 steps on one 3 s clip (rank 8, lr 3e-3,
    posterior means) bring generation with its caption and seed at guidance 1 to at most 0.6
    of the base model's RMS distance from the clip's latent."""
    from fluxmusic_cli.engine.pipeline import Engine
    from fluxmusic_cli.engine.requests import GenerationRequest
    from fluxmusic_cli.training.prepare import load

    t = np.arange(48000) / 16000
    x = 0.4 * np.sin(2 * np.pi * 330 * t) * np.exp(-t)
    x += 0.05 * np.random.default_rng(0).standard_normal(t.size)
    data = tmp_path / "one"
    data.mkdir()
    sf.write(data / "clip.wav", x, 16000)
    (data / "clip.txt").write_text("a plucked string")
    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", str(data), "-o", str(run), *tiny_bundle.cli_args(), *CPU, "--steps", "300",
         "--lora-rank", "8", "--lr", "3e-3", "--latents", "mean", "--save-every", "0",
         "--seed", "0", "-q"]
    )  # fmt: skip
    assert code == 0, err
    prepared = load(run / "data")
    target = prepared.mean[0] * prepared.scaling_factor  # the clip's latent, as trained on

    def distance(loras) -> float:
        engine = Engine(tiny_bundle.engine_options(loras=loras, threads=1))
        request = GenerationRequest(
            prompts=("a plucked string",), seeds=(0,), guidance=1.0, steps=50
        )
        latent = engine.generate(request).clips[0].latent
        return float((latent - target).pow(2).mean().sqrt())

    base = distance(())
    tuned = distance(((str(run / "lora.safetensors"), 1.0),))
    assert tuned <= 0.6 * base, (tuned, base)


def test_batch_and_vary_take_lora_too(trained, run_cli, tiny_bundle, tmp_path):
    adapter = trained["run"] / "lora.safetensors"
    prompts = tmp_path / "list.txt"
    prompts.write_text("a low drone\n")
    code, _, err = run_cli(
        ["batch", str(prompts), "-o", str(tmp_path / "b"), *tiny_bundle.cli_args(), *GEN,
         "--lora", f"{adapter}:0.25"]
    )  # fmt: skip
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b").glob("*.json")]
    assert record["loras"][0]["scale"] == 0.25
    code, _, err = run_cli(
        ["vary", "a low drone", "-o", str(tmp_path / "v"), *tiny_bundle.cli_args(), *CPU,
         "--steps", "2", "--duration", "0.48", "--seeds", "1", "--guidance", "1",
         "--lora", str(adapter)]
    )  # fmt: skip
    assert code == 0, err
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "v").glob("seed*.json")]
    assert record["loras"][0]["file"] == str(adapter)


def test_a_batch_rerun_with_another_lora_is_a_conflict_not_a_skip(
    trained, run_cli, tiny_bundle, tmp_path
):
    (tmp_path / "p.txt").write_text("a low drone\n")
    adapter = str(trained["run"] / "lora.safetensors")
    args = ["batch", str(tmp_path / "p.txt"), "-o", str(tmp_path / "out"),
            *tiny_bundle.cli_args(), *GEN]  # fmt: skip
    code, _, err = run_cli([*args, "--lora", f"{adapter}:0.5"])
    assert code == 0, err
    code, out, err = run_cli([*args, "--lora", f"{adapter}:0.5", "--json"])
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["skipped"] == 1  # same adapter: finished
    code, out, err = run_cli([*args, "--lora", f"{adapter}:1", "--json"])
    assert code == 6 and "loras" in out + err
