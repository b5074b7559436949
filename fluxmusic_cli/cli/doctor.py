"""`fluxmusic doctor`: what this machine offers, and a whole generation on a tiny bundle."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from fluxmusic_cli.cli import config, tiny
from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json, err
from fluxmusic_cli.errors import BadAudioError, FluxMusicError

HELP = """Check the installation: torch, devices, memory, disk, cache and hub reachability.

It shows where each weight source comes from when no flag names it: $FLUXMUSIC_MODEL,
$FLUXMUSIC_T5, $FLUXMUSIC_CLAP, $FLUXMUSIC_VAE_VOCODER, then the config file (keys model, t5,
clap, vae_vocoder), then the built-in defaults.

Then it generates one short clip with a tiny random-weight bundle written to a temporary
folder, through the same loading and generation code as the real models. That clip is noise:
it proves the installation works, nothing about the music.

[bold]Example[/bold]

  fluxmusic doctor --json | jq .checks
"""


def register(app: typer.Typer) -> None:
    app.command("doctor", help=HELP)(doctor)


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def _environment() -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    from fluxmusic_cli.engine import cache, cpu_dtype, devices, hub, paths, perf

    perf.configure_threads()  # as generate does: the CPU's rates depend on the thread count
    place = devices.resolve_placement("auto", "auto")
    rates = cpu_dtype.cpu_rates()
    cuda = torch.cuda.is_available()
    mps = devices.mps_available()
    free_disk = shutil.disk_usage(_existing_parent(hub.hub_cache_dir())).free
    return {
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
        },
        "devices": {
            "cuda": torch.cuda.get_device_name(0) if cuda else None,
            "mps": mps,
            "cpu_threads": torch.get_num_threads(),
            "cpu_native_bf16": devices.cpu_has_native_bf16(),
        },
        "auto_placement": {"device": place.device, "dtype": place.dtype, "why": place.reason},
        "cpu_dtype": {
            "fp32_gflops": round(rates.fp32, 1),
            "bf16_gflops": round(rates.bf16, 1),
            "bf16_margin": cpu_dtype.BF16_MARGIN,
            "auto": rates.choice,
        },
        "memory_available": devices.available_memory_bytes(place.device),
        "default_setup": _default_setup(place.device, place.dtype),
        "disk_free_hub_cache": free_disk,
        "tool_cache": str(paths.cache_dir()),
        "hub_cache": str(hub.hub_cache_dir()),
        "hub": _hub_reachability(),
        "ffmpeg": _ffmpeg(),
        "cached": [e.to_dict() for e in cache.list_cache()],
    }


def _default_setup(device: str, dtype: str) -> dict[str, Any]:
    """Where `--text-device auto` puts the text encoders of the default setup (the default
    variant with T5 and CLAP) on the auto device, and which memory setup it runs in."""
    from fluxmusic_cli.engine import devices, placement, registry

    variant = registry.VARIANTS[registry.DEFAULT_VARIANT]
    need = placement.component_bytes(variant.params, dtype)
    memory = devices.available_memory_bytes(device)
    text = placement.choose_text_device("auto", device, memory, need)
    return {
        "variant": variant.name,
        "weights_gb": round(need["total"] / placement.GB, 1),
        "text_device": text.device,
        "why": text.reason,
        "setup": "unknown" if memory is None else placement.setup_for(memory, need),
    }


def _ffmpeg() -> str | None:
    """ffmpeg's version line, or None: it reads M4A/AAC, MP4, WebM... and writes .m4a."""
    import subprocess

    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return f"{exe} (does not run)"
    first = proc.stdout.splitlines()[0] if proc.stdout else exe
    return " ".join(first.split()[:3])


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cached_summary(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "nothing yet (fluxmusic download fetches the models)"
    total = sum(int(e["size_bytes"]) for e in entries)
    names = ", ".join(str(e["name"]) for e in entries)
    return f"{_gib(total)} in {len(entries)} entries: {names}"


def _hub_reachability() -> str:
    from fluxmusic_cli.engine import hub

    if hub.offline_mode():
        return "not checked (HF_HUB_OFFLINE is set)"
    import urllib.error
    import urllib.request

    url = hub.hub_endpoint() or "https://huggingface.co"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5)
    except urllib.error.HTTPError as exc:  # an HTTP answer still proves the host is reachable
        return f"reachable ({url}, HTTP {exc.code})"
    except (urllib.error.URLError, OSError) as exc:
        return f"NOT reachable ({url}: {getattr(exc, 'reason', exc)}); use local paths or a mirror"
    return f"reachable ({url})"


def _sources() -> dict[str, Any]:
    """Each weight source's default, where it came from, and whether it can be used."""
    from fluxmusic_cli.engine.sources import parse_ref

    out: dict[str, Any] = {}
    for key, found in config.resolve_all().items():
        problem = None
        if key == "model" and found.value == tiny.NAME:
            pass  # written to the tool cache on first use
        else:
            try:
                parse_ref(config.SOURCES[key].kind, found.value)
            except FluxMusicError as exc:
                problem = exc.message
        out[key] = {"value": found.value, "from": found.described, "problem": problem}
    return out


def _smoke_generation() -> dict[str, Any]:
    from fluxmusic_cli import audio
    from fluxmusic_cli.engine.pipeline import Engine
    from fluxmusic_cli.engine.requests import GenerationRequest
    from fluxmusic_cli.tinybundle.bundle import build_tiny_bundle

    with tempfile.TemporaryDirectory(prefix="fluxmusic-doctor-") as tmp:
        t0 = time.perf_counter()
        bundle = build_tiny_bundle(Path(tmp) / "bundle")
        engine = Engine(bundle.engine_options(prompt_cache=False))
        result = engine.generate(
            GenerationRequest(prompts=("doctor check",), seeds=(0,), steps=4, duration=1.0)
        )
        clip = result.clips[0]
        report = audio.check_clip(clip.waveform, clip.sample_rate)
        out = Path(tmp) / "doctor.wav"
        audio.write_audio(out, clip.waveform, clip.sample_rate)
        import soundfile as sf

        frames = sf.info(str(out)).frames
        if frames != clip.waveform.shape[0]:
            raise BadAudioError(f"doctor: wrote {clip.waveform.shape[0]} samples, read {frames}.")
        return {
            "ok": True,
            "seconds": round(time.perf_counter() - t0, 2),
            "samples": int(clip.waveform.shape[0]),
            "sample_rate": clip.sample_rate,
            "peak": report.peak,
            "written_bytes": out.stat().st_size,
            "frames": frames,
        }


def doctor(json_out: opt.Json = False) -> None:
    sources = _sources()  # a broken config file is one sentence before anything else
    config_path = config.config_file()
    with err.status("checking the environment"):
        env = _environment()
    with err.status("generating a clip with a tiny random-weight bundle"):
        smoke = _smoke_generation()
    if json_out:
        emit_json(
            {
                "environment": env,
                "config_file": {"path": str(config_path), "exists": config_path.is_file()},
                "sources": sources,
                "tiny_generation": smoke,
            }
        )
        return
    dev = env["devices"]
    lines = [
        ("torch / transformers / diffusers", " / ".join(env["versions"].values())),
        ("CUDA GPU", dev["cuda"] or "none"),
        ("Apple MPS", "yes" if dev["mps"] else "no"),
        ("CPU threads; native bf16", f"{dev['cpu_threads']}; {dev['cpu_native_bf16']}"),
        ("auto device / dtype", "{device} / {dtype} ({why})".format(**env["auto_placement"])),
        (
            "CPU matmul fp32 / bf16",
            "{fp32_gflops:.0f} / {bf16_gflops:.0f} GFLOP/s: --dtype auto runs {auto} on the CPU "
            "(bf16 only where {bf16_margin}x faster)".format(**env["cpu_dtype"]),
        ),
        ("memory available", _gib(env["memory_available"])),
        (
            "text encoders (default setup)",
            "{text_device}, {setup}: {variant} with T5 + CLAP, {weights_gb} GB of weights "
            "({why})".format(**env["default_setup"]),
        ),
        ("free disk at the hub cache", _gib(env["disk_free_hub_cache"])),
        ("tool cache", env["tool_cache"]),
        ("hub cache", env["hub_cache"]),
        ("hub", env["hub"]),
        (
            "ffmpeg (M4A/AAC, MP4, WebM... in; .m4a out)",
            env["ffmpeg"] or "not installed: WAV, FLAC, OGG and MP3 still work",
        ),
        ("cached", _cached_summary(env["cached"])),
        ("config file", f"{config_path} ({'read' if config_path.is_file() else 'none'})"),
    ]
    for key, found in sources.items():
        problem = f" [red]problem:[/red] {found['problem']}" if found["problem"] else ""
        lines.append(
            (f"{config.SOURCES[key].flag} default", f"{found['value']} ({found['from']}){problem}")
        )
    for name, value in lines:
        err.print(f"[bold]{name}:[/bold] {value}")
    err.print(
        f"[green]tiny generation OK[/green] in {smoke['seconds']} s: {smoke['samples']} samples "
        f"at {smoke['sample_rate']} Hz, written and read back. Its audio is noise from random "
        "weights; it only proves that loading and generation work on this installation. "
        "Every command runs on such weights with --model tiny (no download; noise out)."
    )
