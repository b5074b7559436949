"""`fluxmusic doctor` reports the machine and proves a whole tiny generation works."""

from __future__ import annotations

import json


def test_doctor_reports_environment_and_runs_a_tiny_generation(run_cli):
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    env, smoke = doc["environment"], doc["tiny_generation"]
    assert env["versions"]["torch"] and env["auto_placement"]["device"] in ("cpu", "cuda", "mps")
    assert env["hub"].startswith("not checked")  # the test environment is offline
    assert smoke["ok"] and smoke["samples"] == 16000 == smoke["frames"]
    assert 0 < smoke["peak"] < 1
    setup = env["default_setup"]  # the test machine has no accelerator
    assert setup["variant"] == "small" and setup["text_device"] == "cpu"
    assert setup["setup"] in ("resident", "sequential", "text on cpu", "does not fit")
    assert setup["weights_gb"] > 10  # T5-XXL alone is 9.5 GB in bf16


def test_doctor_places_the_text_encoders_of_an_8_gb_gpu_on_the_cpu(monkeypatch):
    from fluxmusic_cli.cli import doctor
    from fluxmusic_cli.engine import devices

    monkeypatch.setattr(devices, "available_memory_bytes", lambda device: 8 * 10**9)
    setup = doctor._default_setup("cuda", "bf16")
    assert (setup["text_device"], setup["setup"]) == ("cpu", "text on cpu")
    assert "do not fit" in setup["why"]


def test_doctor_says_the_tiny_audio_is_noise(run_cli):
    code, out, err = run_cli(["doctor"])
    assert code == 0, err
    assert "noise" in out + err and "proves" in out + err
    assert "text encoders (default setup):" in err


def test_doctor_shows_the_cpu_matmul_rates_and_the_dtype_auto_picks(run_cli, monkeypatch):
    from fluxmusic_cli.engine import cpu_dtype

    monkeypatch.setattr(cpu_dtype, "measure_rates", lambda: {"fp32": 272.0, "bf16": 151.0})
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    rates = json.loads(out)["environment"]["cpu_dtype"]
    assert rates == {"fp32_gflops": 272.0, "bf16_gflops": 151.0, "bf16_margin": 1.15,
                     "auto": "fp32"}  # fmt: skip
    code, out, err = run_cli(["doctor"])
    assert code == 0, err
    assert "CPU matmul fp32 / bf16: 272 / 151 GFLOP/s: --dtype auto runs fp32" in err
