"""An engine kept for many runs (a server's) with the first-block cache in some of them."""

from __future__ import annotations

import numpy as np

from fluxmusic_cli.engine.pipeline import Engine
from fluxmusic_cli.engine.requests import GenerationRequest

PLAIN = dict(prompts=("slow piano",), seeds=(3,), steps=3, duration=0.48)


def test_a_run_without_the_cache_after_one_with_it_is_a_plain_run(tiny_bundle):
    fresh = Engine(tiny_bundle.engine_options()).generate(GenerationRequest(**PLAIN))
    kept = Engine(tiny_bundle.engine_options())
    kept.generate(GenerationRequest(**PLAIN, cache=0.5))
    after = kept.generate(GenerationRequest(**PLAIN))
    assert np.array_equal(after.clips[0].waveform, fresh.clips[0].waveform)
    assert after.clips[0].record.cache is None
