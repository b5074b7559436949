"""A fixed request renders the waveform and record saved before the engine was split into
stages: the restructuring changed no sample and no recorded setting.

On the machine that saved them the waveform matches bit for bit; another CPU's matmul kernels
round differently (measured: 1.8e-7 at most on a 0.052 peak, on an AMD EPYC where torch picks
its AVX2 kernels), so the check allows 1e-5 of the peak. Any change of setting, step or
formula moves the samples by orders of magnitude more.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fluxmusic_cli.engine.pipeline import Engine
from fluxmusic_cli.engine.requests import GenerationRequest

DATA = Path(__file__).resolve().parents[2] / "data"


def test_a_fixed_request_renders_the_saved_waveform_and_record(tiny_bundle):
    engine = Engine(tiny_bundle.engine_options(prompt_cache=False))
    request = GenerationRequest(
        prompts=("golden prompt, warm piano", "second"),
        seeds=(11, 12),
        steps=4,
        guidance=3.0,
        duration=2.0,
    )
    result = engine.generate(request)
    saved = np.load(DATA / "golden_waveform.npy")
    got = np.stack([c.waveform for c in result.clips])
    assert got.shape == saved.shape
    assert np.abs(got - saved).max() <= 1e-5 * np.abs(saved).max()
    expected = json.loads((DATA / "golden_record.json").read_text())
    record = result.clips[0].record.to_json()
    config = expected.pop("model_config")
    assert {k: record[k] for k in expected} == expected
    assert {
        k: list(v) if isinstance(v, tuple) else v for k, v in record["model"]["config"].items()
    } == config
