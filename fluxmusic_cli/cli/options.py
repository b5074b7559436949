"""Command-line options defined once as `Annotated` aliases, and their choices.

Defaults mirror the engine's (the published sampling script's settings), so `--help` shows
what will run; the choices are derived from the engine's own tuples, so a new device or mode
appears here by itself. Importing this module must stay cheap (no torch): it imports typer and
the engine's torch-free request, device and format modules.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.engine.conditioning import ENCODER_SUBSETS, MODES
from fluxmusic_cli.engine.devices import DEVICE_NAMES, DTYPE_NAMES
from fluxmusic_cli.engine.perf import max_threads
from fluxmusic_cli.engine.placement import TEXT_DEVICES
from fluxmusic_cli.engine.requests import (
    MAX_CACHE,
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_STEPS,
    MEMORY_POLICIES,
    PREFERRED_SEAM,
)
from fluxmusic_cli.engine.sampling import MAX_SECONDS, TRAINED_SECONDS
from fluxmusic_cli.formats import SUPPORTED_FORMATS, suffix_list


def choice(name: str, values: Iterable[str]) -> type[Enum]:
    """A Typer choice whose members are `values` (member name = value)."""
    return Enum(name, [(v, v) for v in values], type=str)


EncodersChoice = choice("EncodersChoice", ENCODER_SUBSETS)
ConditioningChoice = choice("ConditioningChoice", MODES)
DeviceChoice = choice("DeviceChoice", DEVICE_NAMES)
TextDeviceChoice = choice("TextDeviceChoice", TEXT_DEVICES)
DtypeChoice = choice("DtypeChoice", DTYPE_NAMES)
MemoryChoice = choice("MemoryChoice", MEMORY_POLICIES)
FormatChoice = choice("FormatChoice", SUPPORTED_FORMATS)

MODELS = "Model"
SAMPLING = "Sampling"
OUTPUT = "Output"

# The weight sources' defaults come from cli/config.py: $FLUXMUSIC_MODEL, ..., then the config
# file, then the built-in; `[default: ...]` in --help says which.
Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME|FILE",
        help="Variant (small, base, large, giant, giant-full), a .pt/.safetensors file, or tiny: "
        "random weights made on first use, to try any command in seconds without downloading "
        "(the audio is noise). Default also from $FLUXMUSIC_MODEL or the config file.",
        rich_help_panel=MODELS,
    ),
]
T5 = Annotated[
    str,
    typer.Option(
        "--t5",
        metavar="NAME|REPO|DIR",
        help="T5-XXL source: t5-city96 (not gated), t5-sd3 (gated), a hub repo id, or a local "
        "folder in that repo's layout. Default also from $FLUXMUSIC_T5 or the config file.",
        rich_help_panel=MODELS,
    ),
]
Clap = Annotated[
    str,
    typer.Option(
        "--clap",
        metavar="REPO|DIR",
        help="CLAP source: hub repo id or local folder. Default also from $FLUXMUSIC_CLAP or the "
        "config file.",
        rich_help_panel=MODELS,
    ),
]
VaeVocoder = Annotated[
    str,
    typer.Option(
        "--vae-vocoder",
        metavar="REPO|DIR",
        help="Hub repo id or local folder holding vae/ and vocoder/ (AudioLDM 2's). Default also "
        "from $FLUXMUSIC_VAE_VOCODER or the config file.",
        rich_help_panel=MODELS,
    ),
]
EncodersOpt = Annotated[
    EncodersChoice,
    typer.Option(
        "--encoders",
        help="Text encoders to run; a left-out one contributes its stored empty-prompt "
        "embedding (clap alone never loads the 9.5 GB T5).",
        rich_help_panel=MODELS,
    ),
]
ConditioningOpt = Annotated[
    ConditioningChoice,
    typer.Option(
        "--conditioning",
        help="training: T5 filled with id 1 + attention masks, CLAP 77 tokens (what the weights "
        "saw). reference-script: both padded to 256, no masks (the published sampler).",
        rich_help_panel=MODELS,
    ),
]
DeviceOpt = Annotated[
    DeviceChoice, typer.Option("--device", help="Where to run.", rich_help_panel=MODELS)
]
DtypeOpt = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype",
        help="auto = bf16 on a GPU that computes it or a CPU where it measures faster; fp32 else.",
        rich_help_panel=MODELS,
    ),
]
MemoryOpt = Annotated[
    MemoryChoice,
    typer.Option(
        "--memory",
        help="sequential: release the text encoders before the transformer loads (peak = the "
        "larger part); resident: keep all loaded; auto: sequential when they do not fit.",
        rich_help_panel=MODELS,
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile each transformer block: slower first step, faster after (on a "
        "GPU; little gain on a CPU); falls back to eager with a warning if compilation fails.",
        rich_help_panel=MODELS,
    ),
]
Threads = Annotated[
    int | None,
    number_option(
        "--threads",
        whole=True,
        minimum=1,
        maximum=max_threads(),
        metavar="N",
        help="CPU threads (default: OMP_NUM_THREADS, else the physical cores).",
        rich_help_panel=MODELS,
        show_default=False,
    ),
]
TextDeviceOpt = Annotated[
    TextDeviceChoice,
    typer.Option(
        "--text-device",
        help="Where T5 and CLAP encode the prompts. auto: on the model's device when they fit "
        "there, else on the CPU (only the embeddings move; the transformer and decoder stay on "
        "the accelerator), which lets an 8 GB GPU run the default setup.",
        rich_help_panel=MODELS,
    ),
]
GuidanceIntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--guidance-interval",
        metavar="LO:HI",
        help="Classifier-free guidance only while the time t (1 = noise, 0 = music) is in "
        "[LO, HI]; other steps run one conditional pass, half the work. Off by default. Its "
        "effect on the sound is not measured (no real weights were available here).",
        rich_help_panel=SAMPLING,
        show_default=False,
    ),
]
CacheOpt = Annotated[
    float | None,
    number_option(
        "--cache",
        metavar="THRESHOLD",
        minimum=0,
        maximum=MAX_CACHE,
        help="First-Block Cache: skip the transformer's other blocks on a step whose first "
        "block changed by at most THRESHOLD (relative) since the last computed step, e.g. "
        "0.05. Off by default. Its effect on the sound is not measured (no real weights were "
        "available here).",
        rich_help_panel=SAMPLING,
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="HF_TOKEN",
        metavar="TOKEN",
        help="Hugging Face token for gated repos (default: $HF_TOKEN).",
        rich_help_panel=MODELS,
        show_default=False,
    ),
]
Steps = Annotated[
    int,
    number_option(
        "--steps",
        whole=True,
        minimum=1,
        maximum=MAX_STEPS,
        metavar="N",
        help="Euler steps.",
        rich_help_panel=SAMPLING,
    ),
]
Guidance = Annotated[
    float,
    number_option(
        "--guidance",
        "--cfg",
        minimum=0,
        maximum=MAX_GUIDANCE,
        metavar="SCALE",
        help="Classifier-free guidance scale (paper: 3.5, published script: 7.0).",
        rich_help_panel=SAMPLING,
    ),
]
Negative = Annotated[
    str,
    typer.Option(
        "--negative-prompt",
        metavar="PROMPT",
        help='Negative prompt; "" uses the empty-prompt embedding (the paper\'s setting).',
        rich_help_panel=SAMPLING,
    ),
]


def seed_option(help: str, **kwargs: Any) -> Any:
    """`--seed`/`-s`: a whole number from 0 to the largest seed; `help` says what it seeds."""
    return number_option(
        "--seed", "-s", whole=True, minimum=0, maximum=MAX_SEED, metavar="N", help=help, **kwargs
    )


Seed = Annotated[
    int | None,
    seed_option(
        "Seed (random if absent; always recorded).", rich_help_panel=SAMPLING, show_default=False
    ),
]
Duration = Annotated[
    float,
    number_option(
        "--duration",
        "-d",
        metavar="SECONDS",
        help="Seconds, rounded up to the 80 ms latent grid and trimmed back; trained on 10.24.",
        rich_help_panel=SAMPLING,
    ),
]
SampleRate = Annotated[
    int,
    number_option(
        "--sample-rate",
        whole=True,
        minimum=8000,
        maximum=192000,
        metavar="HZ",
        help="Resample the 16 kHz output (e.g. 44100).",
        rich_help_panel=OUTPUT,
    ),
]
PeakNormalize = Annotated[
    bool,
    typer.Option(
        "--peak-normalize/--no-peak-normalize",
        help="Scale each clip to a peak of -0.4 dBFS (never clips).",
        rich_help_panel=OUTPUT,
    ),
]
Force = Annotated[
    bool,
    typer.Option("--force", "-f", help="Overwrite existing files.", rich_help_panel=OUTPUT),
]
Json = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout.", rich_help_panel=OUTPUT),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bars or chatter.", rich_help_panel=OUTPUT),
]
Yes = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Download without asking.", rich_help_panel=MODELS),
]
OutputPath = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE|DIR|-",
        help=f"File ({suffix_list()}), '-' for WAV on stdout, or a folder (a path without "
        "an extension). Default: <prompt-slug>-s<seed>.wav here.",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


Lora = Annotated[
    list[str] | None,
    typer.Option(
        "--lora",
        metavar="FILE[:SCALE]",
        help="A LoRA from `fluxmusic train` as FILE or FILE:SCALE (default scale 1.0); "
        "repeatable, the adapters add up.",
        rich_help_panel=MODELS,
        show_default=False,
    ),
]


def loras(values: list[str] | None) -> tuple[tuple[str, float], ...]:
    """Repeated --lora values as EngineOptions.loras; a scale that is not a number exits 2."""
    from fluxmusic_cli.engine.lora import parse_specs

    return parse_specs(values)


# -- editing and long-form -------------------------------------------------------------------

EDITING = "Editing"

SaveLatent = Annotated[
    bool,
    typer.Option(
        "--save-latent",
        help="Also write NAME.latent.safetensors (the exact final latent), so later edits of "
        "this file start from it instead of re-encoding the audio.",
        rich_help_panel=OUTPUT,
    ),
]
Context = Annotated[
    float,
    number_option(
        "--context",
        minimum=0,
        maximum=TRAINED_SECONDS,
        metavar="SECONDS",
        help="Seconds of the music so far that each new 10.24 s window continues from (on the "
        "80 ms grid, less than 10.24).",
        rich_help_panel=EDITING,
    ),
]
Crossfade = Annotated[
    float,
    number_option(
        "--crossfade",
        minimum=0,
        maximum=MAX_SECONDS,
        metavar="SECONDS",
        help="Seconds over which your recording blends into generated music, inside the kept "
        "part (0: a hard cut).",
        rich_help_panel=EDITING,
    ),
]
Seam = Annotated[
    float | None,
    number_option(
        "--seam",
        maximum=MAX_SECONDS,
        metavar="SECONDS",
        help="Seconds regenerated around the loop point (a multiple of 0.16, at most half the "
        "loop).",
        rich_help_panel=EDITING,
        show_default=f"auto: {PREFERRED_SEAM:.2f} s, or at most half of a shorter clip",
    ),
]
InputAudio = Annotated[
    str | None,
    typer.Argument(
        help="Your recording: WAV, FLAC, OGG, MP3, or (with ffmpeg) M4A/AAC, MP4, MOV, WebM, "
        "Opus, WMA...; '-' reads it from stdin. With --from-record: the recorded input.",
        metavar="INPUT",
        show_default=False,
    ),
]
EditPrompt = Annotated[
    str | None,
    typer.Argument(
        help="What the music should become; left out, the prompt in INPUT's fluxmusic record "
        "is used.",
        metavar="PROMPT",
        show_default=False,
    ),
]
FromRecord = Annotated[
    Path | None,
    typer.Option(
        "--from-record",
        metavar="RECORD",
        help="Replay a generation record (NAME.json or a tagged audio file); explicit flags win.",
        show_default=False,
    ),
]
EditOutput = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE|DIR|-",
        help=f"File ({suffix_list()}), '-' for WAV on stdout, or a folder (a path "
        "without an extension). Default: <input>-<command>-s<seed>.wav here.",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]


# -- where the clips are made: here, or on a server (cli/remote.py) -------------------------

SERVER = "Server"
HOST_ENV = "FLUXMUSIC_HOST"

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar=HOST_ENV,
        metavar="URL",
        help="Make the clips on the `fluxmusic serve` at URL (default: $FLUXMUSIC_HOST) and "
        "write them here; nothing loads on this machine. The token comes from "
        "$FLUXMUSIC_TOKEN or the server's server.json.",
        rich_help_panel=SERVER,
        show_default=False,
        show_envvar=False,
    ),
]
LocalOpt = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Make the clips here, even when $FLUXMUSIC_HOST names a server.",
        rich_help_panel=SERVER,
    ),
]


# -- commands that write a folder of clips (batch, vary) ------------------------------------


OutDir = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        metavar="DIR",
        help="Folder for the clips, their records and manifest.jsonl.",
        rich_help_panel=OUTPUT,
        show_default=False,
    ),
]
Format = Annotated[
    FormatChoice,
    typer.Option(
        "--format",
        help="Audio format of every clip (m4a needs ffmpeg).",
        rich_help_panel=OUTPUT,
    ),
]
BatchSize = Annotated[
    int,
    number_option(
        "--batch-size",
        "-b",
        whole=True,
        minimum=1,
        maximum=256,
        metavar="N",
        help="Prompts per forward pass. 1 keeps every clip bit-identical to `generate`; more "
        "is faster on GPUs (clips then agree to about 1e-6). Rows with other steps, guidance, "
        "duration or negative prompt go in their own passes.",
        rich_help_panel=SAMPLING,
    ),
]
JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Newline-delimited JSON events on stdout: item_started, item_done, item_skipped, "
        "item_failed, summary.",
        rich_help_panel=OUTPUT,
    ),
]
