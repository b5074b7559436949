"""The whole evaluation on tiny random-weight embedders and short synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest
from evalclips import make_set, tone, varied_waves

from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation.request import EvalRequest
from fluxmusic_cli.evaluation.runner import run_eval

PROMPTS = {f"clip{i}": f"a sine tone {i}" for i in range(4)}


def request(models, gen, ref=None, **kw) -> EvalRequest:
    return EvalRequest(
        generated=gen,
        reference=ref,
        vggish_weights=models.vggish,
        panns_weights=models.cnn14,
        clap_model=str(models.clap),
        is_splits=2,
        **kw,
    )


@pytest.fixture
def reference(tmp_path):
    return make_set(tmp_path / "ref", varied_waves())


def test_identical_sets_give_zero_fad_and_kl_and_all_metrics_report_n(
    eval_models, tmp_path, reference
):
    gen = make_set(tmp_path / "gen", varied_waves(), prompts=PROMPTS)
    report = run_eval(request(eval_models, gen, reference))
    m = report.metrics
    assert m["fad"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert abs(m["kl"]["value"]) < 1e-3 and m["kl"]["n_pairs"] == 4
    assert m["is"]["n"] == 4 and m["is"]["value"] >= 1.0
    assert -1.0 <= m["clap"]["value"] <= 1.0 and m["clap"]["n"] == 4
    assert report.generated.n == 4 and report.generated.sample_rates == [16000]
    assert report.generated.duration_mean_s == pytest.approx(2.0)
    assert any("fewer than 10 per split" in w for w in report.warnings)
    assert all(row.clap_score is not None and row.kl_softmax is not None for row in report.per_file)


def test_degraded_copies_score_a_larger_fad(eval_models, tmp_path, reference):
    halved = {k: 0.5 * v for k, v in varied_waves().items()}
    noisy = {
        k: v + 0.3 * np.random.default_rng(9).standard_normal(v.shape)
        for k, v in varied_waves().items()
    }
    fads = {}
    for name, waves in (("same", varied_waves()), ("halved", halved), ("noisy", noisy)):
        gen = make_set(tmp_path / name, waves)
        fads[name] = run_eval(request(eval_models, gen, reference, metrics=("fad",))).metrics[
            "fad"
        ]["value"]
    assert fads["same"] < 1e-6 < fads["halved"]
    assert fads["noisy"] > 1e-3


def test_second_run_hits_the_cache_and_no_cache_recomputes(eval_models, tmp_path, reference):
    gen = make_set(tmp_path / "gen", varied_waves(), prompts=PROMPTS)
    first = run_eval(request(eval_models, gen, reference))
    # The reference clips have the same bytes as the generated ones: computed once, reused.
    assert first.cache["vggish"]["forward_calls"] == 4
    assert first.cache["vggish"]["cached"] == 4
    second = run_eval(request(eval_models, gen, reference))
    assert all(s["forward_calls"] == 0 and s["computed"] == 0 for s in second.cache.values())
    assert second.metrics == first.metrics
    third = run_eval(request(eval_models, gen, reference, use_cache=False, metrics=("is",)))
    assert third.cache["panns-cnn14-16k"]["forward_calls"] == 4


def test_cache_is_keyed_by_content_not_path(eval_models, tmp_path, reference):
    gen = make_set(tmp_path / "gen", varied_waves())
    run_eval(request(eval_models, gen, reference, metrics=("fad",)))
    renamed = make_set(tmp_path / "renamed", {f"x{k}": v for k, v in varied_waves().items()})
    again = run_eval(request(eval_models, renamed, reference, metrics=("fad",)))
    assert again.cache["vggish"]["computed"] == 0


def test_missing_pairs_are_an_error_naming_the_ids(eval_models, tmp_path, reference):
    waves = varied_waves()
    waves["stray"] = waves.pop("clip3")
    gen = make_set(tmp_path / "gen", waves)
    with pytest.raises(UsageError) as info:
        run_eval(request(eval_models, gen, reference, metrics=("kl",)))
    assert "clip3" in str(info.value) and "stray" in str(info.value)


def test_silent_and_too_short_clips_get_clear_messages(eval_models, tmp_path, reference):
    waves = varied_waves()
    waves["clip0"] = np.zeros_like(waves["clip0"])
    gen = make_set(tmp_path / "gen", waves)
    report = run_eval(request(eval_models, gen, reference, metrics=("fad", "is")))
    assert any("silent" in w and "clip0" in w for w in report.warnings)
    short = make_set(tmp_path / "short", {"clip0": tone(440.0, seconds=0.5)})
    with pytest.raises(UsageError, match="at least 0.975 s.*clip0"):
        run_eval(request(eval_models, short, reference, metrics=("fad",)))


def test_clap_needs_prompts_and_fad_needs_a_reference(eval_models, tmp_path):
    gen = make_set(tmp_path / "gen", varied_waves())
    with pytest.raises(UsageError, match="prompts"):
        run_eval(request(eval_models, gen, metrics=("clap",)))
    with pytest.raises(UsageError, match="--reference"):
        run_eval(request(eval_models, gen, metrics=("fad",)))
    report = run_eval(request(eval_models, gen))
    assert set(report.metrics) == {"is"} and len(report.notes) == 2


def test_clap_fad_and_fad_infinity_options(eval_models, tmp_path, reference):
    gen = make_set(tmp_path / "gen", {k: 0.5 * v for k, v in varied_waves().items()})
    report = run_eval(
        request(
            eval_models, gen, reference, metrics=("fad",), fad_embedder="clap", fad_infinity=True
        )
    )
    assert report.metrics["fad"]["embedder"] == "clap"
    assert report.metrics["fad"]["n_generated_embeddings"] == 4
    assert "r2" in report.metrics["fad_infinity"]
