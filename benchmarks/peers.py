"""Peers at their published sizes with random weights: MusicGen small/medium, AudioLDM 2 music.

Configurations are written out here from the published config files' values (no downloads).
`generate(name, steps)` runs in a child process (see worker.py) so its peak RSS is its own.
`steps` is "default" (MusicGen: 500 tokens = 10 s at 50 Hz; AudioLDM 2: 200 DDIM steps) or
a smaller count, from which the caller extrapolates per-step time to the default.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

SECONDS = 10.0
MUSICGEN_TOKENS = 500  # EnCodec 32 kHz frames at 50 Hz
AUDIOLDM2_STEPS = 200  # AudioLDM2Pipeline's default num_inference_steps
GUIDANCE = {"musicgen": 3.0, "audioldm2": 3.5}

T5_BASE = dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
               feed_forward_proj="relu")  # fmt: skip
ENCODEC_32KHZ = dict(
    audio_channels=1, codebook_dim=128, codebook_size=2048, compress=2, dilation_growth_rate=2,
    hidden_size=128, kernel_size=7, last_kernel_size=7, norm_type="weight_norm", normalize=False,
    num_filters=64, num_lstm_layers=2, num_residual_layers=1, pad_mode="reflect",
    residual_kernel_size=3, sampling_rate=32000, target_bandwidths=[2.2], trim_right_ratio=1.0,
    upsampling_ratios=[8, 5, 4, 4], use_causal_conv=False, use_conv_shortcut=False,
)  # fmt: skip
MUSICGEN_DECODER = {
    "musicgen-small": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096
    ),  # fmt: skip
    "musicgen-medium": dict(
        hidden_size=1536, num_hidden_layers=48, num_attention_heads=24, ffn_dim=6144
    ),  # fmt: skip
}


def _musicgen(name: str, steps: str) -> dict:
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    t0 = time.perf_counter()
    decoder = MusicgenDecoderConfig(
        vocab_size=2048, num_codebooks=4, max_position_embeddings=2048, pad_token_id=2048,
        bos_token_id=2048, decoder_start_token_id=2048, activation_function="gelu",
        **MUSICGEN_DECODER[name],
    )  # fmt: skip
    config = MusicgenConfig(text_encoder=T5Config(**T5_BASE).to_dict(),
                            audio_encoder=EncodecConfig(**ENCODEC_32KHZ).to_dict(),
                            decoder=decoder.to_dict())  # fmt: skip
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(config).eval()
    gc = model.generation_config
    gc.pad_token_id = gc.decoder_start_token_id = gc.bos_token_id = 2048
    built = time.perf_counter() - t0
    tokens = MUSICGEN_TOKENS if steps == "default" else int(steps)
    ids = torch.randint(0, 32000, (1, 16))
    stamps: list[float] = []

    def stamp(input_ids, scores):  # a logits processor: called once per generated token
        stamps.append(time.perf_counter())
        return scores

    t1 = time.perf_counter()
    with torch.inference_mode():
        audio = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
            guidance_scale=GUIDANCE["musicgen"], max_new_tokens=tokens,
            logits_processor=[stamp],
        )  # fmt: skip
    gen = time.perf_counter() - t1
    return {"build_s": built, "generate_s": gen, "units": tokens, "default_units": MUSICGEN_TOKENS,
            "unit_times": _diffs(stamps),
            "unit": "token", "audio_samples": int(audio.shape[-1]),
            "params": sum(p.numel() for p in model.parameters())}  # fmt: skip


def _audioldm2(steps: str) -> dict:
    import torch
    from diffusers import AudioLDM2Pipeline, AutoencoderKL, DDIMScheduler
    from diffusers.pipelines.audioldm2 import (
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
    )
    from transformers import (
        AutoTokenizer,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    from fluxmusic_cli.tinybundle.text import write_tiny_clap, write_tiny_t5

    t0 = time.perf_counter()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="aldm2-tok-"))
    tok_clap = AutoTokenizer.from_pretrained(write_tiny_clap(tmp / "clap", hidden=32))
    tok_t5 = AutoTokenizer.from_pretrained(write_tiny_t5(tmp / "t5", d_model=32))
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=256, in_channels=8, out_channels=8,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        block_out_channels=(128, 256, 384, 640), layers_per_block=2, attention_head_dim=8,
        cross_attention_dim=([None, 768, 1024],) * 4, norm_num_groups=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3, block_out_channels=[128, 256, 512],
        layers_per_block=2, latent_channels=8, norm_num_groups=32, sample_size=1024,
        scaling_factor=0.4110932946205139, force_upcast=True,
    )  # fmt: skip
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
        upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
        resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
        normalize_before=False))  # fmt: skip
    clap = ClapModel(ClapConfig(projection_dim=512))  # laion/clap-htsat-unfused sizes
    t5 = T5EncoderModel(T5Config(  # google/flan-t5-large encoder
        vocab_size=32128, d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16,
        feed_forward_proj="gated-gelu"))  # fmt: skip
    # GPT2Model lost its generation helpers in transformers 5, which the pipeline still calls;
    # the LM-head model has them and returns the same hidden states (its head adds ~0.1%).
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=768, n_layer=12, n_head=12))
    gpt2.config.max_new_tokens = 8  # what the published language_model config sets
    projection = AudioLDM2ProjectionModel(512, 1024, 768)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                              beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = AudioLDM2Pipeline(
        vae=vae.eval(), text_encoder=clap.eval(), text_encoder_2=t5.eval(),
        projection_model=projection.eval(), language_model=gpt2.eval(), tokenizer=tok_clap,
        tokenizer_2=tok_t5, feature_extractor=ClapFeatureExtractor(), unet=unet.eval(),
        scheduler=scheduler, vocoder=vocoder.eval(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    built = time.perf_counter() - t0
    n = AUDIOLDM2_STEPS if steps == "default" else int(steps)
    stamps: list[float] = []
    t1 = time.perf_counter()
    with torch.inference_mode():
        out = pipe("a calm piano melody with soft strings", num_inference_steps=n,
                   audio_length_in_s=SECONDS, guidance_scale=GUIDANCE["audioldm2"],
                   generator=torch.Generator().manual_seed(0), callback_steps=1,
                   callback=lambda i, t, latents: stamps.append(time.perf_counter()))  # fmt: skip
    gen = time.perf_counter() - t1
    params = sum(p.numel() for m in (unet, vae, vocoder, clap, t5, gpt2, projection)
                 for p in m.parameters())  # fmt: skip
    return {
        "build_s": built,
        "generate_s": gen,
        "units": n,
        "default_units": AUDIOLDM2_STEPS,
        "unit_times": _diffs(stamps),
        "unit": "step",
        "audio_samples": int(out.audios.shape[-1]),
        "params": params,
    }


def _diffs(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def generate(name: str, steps: str) -> dict:
    if name.startswith("musicgen"):
        return _musicgen(name, steps)
    if name == "audioldm2":
        return _audioldm2(steps)
    raise SystemExit(f"unknown peer {name!r}")


QUICK_UNITS = {"musicgen-small": 50, "musicgen-medium": 20, "audioldm2": 5}


def run_section(name: str, quick: bool) -> dict:
    import json

    from common import load_avg, median, run_child

    start = load_avg()
    units = str(QUICK_UNITS[name]) if quick else "default"
    worker = str(Path(__file__).resolve().parent / "worker.py")
    run = run_child([sys.executable, worker, "peer", name, units])
    if run.returncode != 0:
        raise RuntimeError(f"{name} failed: {run.stderr.strip()[-600:]}")
    m = json.loads(run.stdout.strip().splitlines()[-1])
    times = m.pop("unit_times")
    # Median of the gaps between successive tokens/steps; the rest of generate_s (text
    # encoders, first unit, audio decoding) is a fixed cost that does not scale with units.
    per_unit = median(times[1:] or times) if times else m["generate_s"] / m["units"]
    fixed = max(0.0, m["generate_s"] - per_unit * m["units"])
    extrapolated = m["units"] != m["default_units"]
    clip_s = fixed + per_unit * m["default_units"] if extrapolated else m["generate_s"]
    return {**m, "wall_s": run.wall_s, "peak_rss_mb": run.peak_rss_mb,
            "s_per_unit": per_unit, "fixed_s": fixed, "s_per_10s_clip": clip_s,
            "extrapolated": extrapolated,
            "load_avg": {"start": start, "end": load_avg()}}  # fmt: skip


def summary_rows(name: str, r: dict) -> list[tuple[str, str]]:
    if "error" in r:
        return [("error", r["error"][:300])]
    how = (f"extrapolated from {r['units']} {r['unit']}s" if r["extrapolated"]
           else f"{r['units']} {r['unit']}s measured")  # fmt: skip
    return [(f"{name} 10 s clip", f"{r['s_per_10s_clip']:.0f} s ({how}), "
                                  f"peak RSS {r['peak_rss_mb']:.0f} MB")]  # fmt: skip
