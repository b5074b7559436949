"""The engine end to end on a tiny bundle: determinism, validation, loading discipline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluxmusic_cli.engine import conditioning, sampling
from fluxmusic_cli.engine.pipeline import Engine
from fluxmusic_cli.engine.requests import GenerationRequest
from fluxmusic_cli.errors import UsageError

FAST = dict(steps=3, duration=0.48)


@pytest.fixture
def engine(tiny_bundle):
    return Engine(tiny_bundle.engine_options())


def test_a_seed_gives_the_same_clip_alone_and_inside_a_batch(engine):
    alone = engine.generate(GenerationRequest(prompts=("lofi piano",), seeds=(11,), **FAST))
    batch = engine.generate(
        GenerationRequest(prompts=("jazz", "lofi piano", "rock"), seeds=(3, 11, 5), **FAST)
    )
    assert np.array_equal(alone.clips[0].waveform, batch.clips[1].waveform)
    assert not np.array_equal(batch.clips[0].waveform, batch.clips[1].waveform)


def test_output_length_is_the_requested_duration(engine):
    result = engine.generate(
        GenerationRequest(prompts=("drums",), seeds=(1,), steps=2, duration=0.5)
    )
    clip = result.clips[0]
    assert clip.sample_rate == 16000 and clip.waveform.shape == (8000,)
    assert clip.waveform.dtype == np.float32 and np.isfinite(clip.waveform).all()
    assert clip.record.latent_frames == sampling.latent_length(0.5) == 14


def test_larger_forward_batches_agree_closely_with_single_items(tiny_bundle, engine):
    request = GenerationRequest(prompts=("a", "b", "c"), seeds=(1, 2, 3), **FAST)
    single = engine.generate(request)
    batched = Engine(tiny_bundle.engine_options(forward_batch=3)).generate(request)
    assert batched.clips[0].record.forward_batch == 3
    for one, many in zip(single.clips, batched.clips):
        scale = np.abs(one.waveform).max()
        assert np.abs(one.waveform - many.waveform).max() <= 1e-4 * scale


def test_models_load_once_across_generations(tiny_bundle, load_counts):
    engine = Engine(tiny_bundle.engine_options())
    for seed in (1, 2):
        engine.generate(GenerationRequest(prompts=("ambient pad",), seeds=(seed,), **FAST))
    assert load_counts == {"transformer": 1, "decoder": 1}


def test_given_latents_replace_the_noise(engine):
    length = sampling.latent_length(FAST["duration"])
    noise = sampling.get_noise([11], length)
    from_seed = engine.generate(GenerationRequest(prompts=("x",), seeds=(11,), **FAST))
    given = engine.generate(GenerationRequest(prompts=("x",), seeds=(0,), **FAST), latents=noise)
    assert np.array_equal(from_seed.clips[0].waveform, given.clips[0].waveform)


def test_record_holds_settings_seed_and_model_hash(engine, tiny_bundle):
    result = engine.generate(
        GenerationRequest(prompts=("cello",), seeds=(9,), guidance=3.5, negative_prompt="", **FAST)
    )
    rec = result.clips[0].record
    assert rec.seed == 9 and rec.prompt == "cello" and rec.guidance == 3.5
    assert rec.negative_prompt == "" and rec.steps == 3
    assert rec.model["file"] == str(tiny_bundle.model) and len(rec.model["sha256"]) == 64
    assert rec.dtype == "fp32" and rec.device == "cpu"
    assert set(rec.timings) >= {"encode_s", "denoise_s", "decode_s", "total_s"}


def test_guidance_one_skips_the_unconditional_half(tiny_bundle, monkeypatch):
    engine = Engine(tiny_bundle.engine_options(forward_batch=2))
    calls = []
    original = sampling.denoise

    def spy(velocity, img, timesteps, guidance, **kw):
        def wrapped(x, t):
            calls.append(x.shape[0])
            return velocity(x, t)

        return original(wrapped, img, timesteps, guidance, **kw)

    monkeypatch.setattr(sampling, "denoise", spy)
    engine.generate(GenerationRequest(prompts=("a", "b"), seeds=(1, 2), guidance=1.0, **FAST))
    engine.generate(GenerationRequest(prompts=("a", "b"), seeds=(1, 2), guidance=2.0, **FAST))
    assert calls == [2] * 3 + [4] * 3


def test_clap_only_never_constructs_t5_once_its_empty_embedding_is_stored(tiny_bundle, monkeypatch):
    Engine(tiny_bundle.engine_options(encoders="both")).conditioner("clap").precompute_empty()

    def forbidden(*args, **kwargs):
        raise AssertionError("T5 must not be loaded")

    monkeypatch.setitem(conditioning._LOADERS, "t5", forbidden)
    engine = Engine(tiny_bundle.engine_options(encoders="clap"))
    result = engine.generate(GenerationRequest(prompts=("harp",), seeds=(1,), **FAST))
    assert result.clips[0].record.encoders == "clap"


def test_long_durations_run_in_trained_windows_linear_in_length(engine, monkeypatch):
    lengths = []
    original = sampling.masked_denoise

    def spy(velocity, known, *args, **kwargs):
        lengths.append(known.shape[2])
        return original(velocity, known, *args, **kwargs)

    monkeypatch.setattr(sampling, "masked_denoise", spy)
    request = GenerationRequest(prompts=("a",), seeds=(1,), steps=1, duration=15.0)
    assert request.check() is None
    clip = engine.generate(request).clips[0]
    assert lengths == [256, 128 + 120]  # one trained window, then 5.12 s of context + the rest
    assert clip.record.lookup("windows") == 2 and clip.record.lookup("context") == 5.12
    assert clip.waveform.shape == (240000,) and clip.latent.shape == (8, 376, 16)


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(steps=0), "Steps"),
        (dict(steps=1001), "Steps"),
        (dict(guidance=-1.0), "Guidance"),
        (dict(guidance=float("nan")), "Guidance"),
        (dict(duration=0.0), "Duration"),
        (dict(duration=-3.0), "Duration"),
        (dict(duration=301.0), "limit"),
        (dict(prompts=("  ",)), "Empty prompt"),
        (dict(seeds=(-1,)), "Seed"),
    ],
)
def test_bad_requests_are_refused_with_a_sentence(changes, words):
    values = dict(prompts=("ok",), seeds=(1,), steps=2, duration=1.0)
    values.update(changes)
    with pytest.raises(UsageError, match=words):
        GenerationRequest(**values).check()


@pytest.mark.parametrize("policy, loads", [("sequential", 2), ("resident", 1)])
def test_memory_policy_decides_whether_encoders_stay_loaded(
    tiny_bundle, policy, loads, load_counts, encoder_work
):
    engine = Engine(tiny_bundle.engine_options(memory=policy, prompt_cache=False))
    engine.generate(GenerationRequest(prompts=("violin",), seeds=(1,), **FAST))
    engine.generate(GenerationRequest(prompts=("oboe",), seeds=(1,), **FAST))
    assert encoder_work.loads["clap"] == loads
    assert load_counts["transformer"] == loads


def test_durations_round_up_to_the_80_ms_grid():
    assert sampling.latent_length(10.24) == 256
    assert sampling.latent_length(0.08) == 2
    assert sampling.latent_length(0.081) == 4
    assert sampling.num_samples(10.24) == 163840


def test_noise_is_drawn_per_item_on_the_cpu():
    both = sampling.get_noise([5, 6], 4)
    assert torch.equal(both[1], sampling.get_noise([6], 4)[0])
    assert torch.equal(
        both[0], torch.randn((8, 4, 16), generator=torch.Generator("cpu").manual_seed(5))
    )


def test_compile_failure_falls_back_to_eager_with_a_warning(tiny_bundle, engine, monkeypatch):
    def broken_compile(model, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler for inductor")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    request = GenerationRequest(prompts=("tuba",), seeds=(4,), **FAST)
    compiled = Engine(tiny_bundle.engine_options(compile=True)).generate(request)
    eager = engine.generate(request)
    assert any("torch.compile failed" in w for w in compiled.warnings)
    assert compiled.clips[0].record.compile is False
    assert compiled.clips[0].record.compile_scope is None
    assert np.array_equal(compiled.clips[0].waveform, eager.clips[0].waveform)


def test_compile_is_regional_and_recorded(tiny_bundle, engine, monkeypatch):
    compiled_callables = []

    def fake_compile(fn, **kwargs):
        compiled_callables.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    request = GenerationRequest(prompts=("tuba",), seeds=(4,), **FAST)
    compiled = Engine(tiny_bundle.engine_options(compile=True)).generate(request)
    record = compiled.clips[0].record
    assert record.compile is True and record.compile_scope == "blocks"
    # One compiled callable per transformer block, none for the model as a whole.
    owners = {type(fn.__self__).__name__ for fn in compiled_callables}
    assert owners == {"FluxTransformerBlock", "FluxSingleTransformerBlock"}
    assert np.array_equal(compiled.clips[0].waveform, engine.generate(request).clips[0].waveform)


def test_thread_count_is_applied_and_recorded(tiny_bundle):
    engine = Engine(tiny_bundle.engine_options(threads=1))
    before = torch.get_num_threads()
    try:
        result = engine.generate(GenerationRequest(prompts=("flute",), seeds=(1,), **FAST))
        assert result.clips[0].record.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
