"""`fluxmusic train`: fine-tune on your own music (LoRA by default, or every weight)."""

from __future__ import annotations

import os
import shlex
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.console import emit_json_line, err, warn
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.option_group import EngineGroup, Shared, shared_options
from fluxmusic_cli.engine.requests import MAX_STEPS
from fluxmusic_cli.training.loop import MAX_BATCH_SIZE, MAX_GRAD_ACCUM, MAX_LORA_ALPHA, MAX_LR

TRAINING = "Training"
MAX_TRAIN_STEPS = 10_000_000
LORA = "LoRA"
RUN = "Run folder"

TRAIN_HELP = """Fine-tune FluxMusic on your own recordings and captions.

DATA is a folder of audio files with a caption beside each (song.mp3 and
song.txt), a CSV or JSONL table with an audio column (file, path or audio)
and a caption column (caption or prompt), or a MusicCaps / Song Describer
CSV with --audio-dir. Recordings are cut into 10.24 s segments and encoded
once (cached in RUN_DIR/data); training then holds neither T5 nor the VAE.

[bold]Examples[/bold]

  fluxmusic train my-music/ -o runs/piano --model small --steps 2000

  fluxmusic train songs.csv -o runs/full --full --batch-size 4

  fluxmusic train my-music/ -o runs/piano --resume

  fluxmusic generate "solo piano" --model small --lora runs/piano/lora.safetensors

  accelerate launch -m fluxmusic_cli train my-music/ -o runs/piano
"""


class TargetsChoice(str, Enum):
    attn_mlp = "attn-mlp"
    attn_mlp_mod = "attn-mlp-mod"


class LatentsChoice(str, Enum):
    sample = "sample"
    mean = "mean"


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP, no_args_is_help=True)(train)


# Train builds no pipeline: the memory policy, compile, adapters and text placement of sampling
# do not apply.
@shared_options("engine", memory=None, compile_model=None, lora=None, text_device=None)
def train(
    data: Annotated[
        Path,
        typer.Argument(
            help="Folder of audio + NAME.txt captions, or a CSV/JSONL table.",
            metavar="DATA",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="RUN_DIR",
            help="Run folder (created; holds everything the run writes).",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ],
    audio_dir: Annotated[
        Path | None,
        typer.Option(
            "--audio-dir",
            metavar="DIR",
            help="Where a table's recordings are (MusicCaps: YTID.wav; default: beside the table).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int,
        number_option(
            "--steps",
            whole=True,
            minimum=1,
            maximum=MAX_TRAIN_STEPS,
            metavar="N",
            help="Optimiser steps.",
            rich_help_panel=TRAINING,
        ),
    ] = 1000,
    batch_size: Annotated[
        int,
        number_option(
            "--batch-size",
            whole=True,
            minimum=1,
            maximum=MAX_BATCH_SIZE,
            metavar="N",
            help="Segments per step (per process; a batch whose step cannot fit the memory is "
            "refused before anything starts).",
            rich_help_panel=TRAINING,
        ),
    ] = 1,
    grad_accum: Annotated[
        int,
        number_option(
            "--grad-accum",
            whole=True,
            minimum=1,
            maximum=MAX_GRAD_ACCUM,
            metavar="N",
            help="Micro-batches summed into each step.",
            rich_help_panel=TRAINING,
        ),
    ] = 1,
    lr: Annotated[
        float | None,
        number_option(
            "--lr",
            above=0,
            maximum=MAX_LR,
            metavar="RATE",
            help="AdamW learning rate (default 1e-4 for LoRA, 1e-5 with --full).",
            rich_help_panel=TRAINING,
            show_default=False,
        ),
    ] = None,
    latents: Annotated[
        LatentsChoice,
        typer.Option(
            "--latents",
            help="sample: draw from the VAE posterior each step (as the "
            "published training did); mean: its mean.",
            rich_help_panel=TRAINING,
        ),
    ] = LatentsChoice.sample,
    caption_dropout: Annotated[
        float,
        number_option(
            "--caption-dropout",
            minimum=0,
            maximum=1,
            metavar="P",
            help='Probability of each encoder\'s caption being replaced by "" (independently).',
            rich_help_panel=TRAINING,
        ),
    ] = 0.1,
    seed: Annotated[
        int,
        opt.seed_option(
            "Fixes the LoRA init, data order, timesteps, noise and dropout.",
            rich_help_panel=TRAINING,
        ),
    ] = 0,
    ema_decay: Annotated[
        float,
        number_option(
            "--ema-decay",
            minimum=0,
            maximum=0.999999,
            metavar="DECAY",
            help="Keep an EMA of the trained weights (e.g. 0.999) and save it; 0 = off.",
            rich_help_panel=TRAINING,
        ),
    ] = 0.0,
    gradient_checkpointing: Annotated[
        bool,
        typer.Option(
            "--gradient-checkpointing",
            help="Recompute activations in the backward pass: less memory, about a third slower.",
            rich_help_panel=TRAINING,
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Train every weight and save model.safetensors (use with "
            "--model) instead of a LoRA.",
            rich_help_panel=LORA,
        ),
    ] = False,
    lora_rank: Annotated[
        int,
        number_option(
            "--lora-rank",
            whole=True,
            minimum=1,
            maximum=4096,
            metavar="R",
            help="LoRA rank (at most the model's width).",
            rich_help_panel=LORA,
        ),
    ] = 16,
    lora_alpha: Annotated[
        float | None,
        number_option(
            "--lora-alpha",
            above=0,
            maximum=MAX_LORA_ALPHA,
            metavar="ALPHA",
            help="LoRA alpha (default: the rank, i.e. scale 1).",
            rich_help_panel=LORA,
            show_default=False,
        ),
    ] = None,
    lora_targets: Annotated[
        TargetsChoice,
        typer.Option(
            "--lora-targets",
            help="attn-mlp: the attention and MLP linears of both block kinds; attn-mlp-mod: "
            "also their adaLN modulation linears (timestep and CLAP conditioning).",
            rich_help_panel=LORA,
        ),
    ] = TargetsChoice.attn_mlp_mod,
    save_every: Annotated[
        int,
        number_option(
            "--save-every",
            whole=True,
            minimum=0,
            maximum=MAX_TRAIN_STEPS,
            metavar="N",
            help="Checkpoint every N steps (0: at the end only; Ctrl-C and SIGTERM always "
            "save one).",
            rich_help_panel=RUN,
        ),
    ] = 500,
    sample_every: Annotated[
        int,
        number_option(
            "--sample-every",
            whole=True,
            minimum=0,
            maximum=MAX_TRAIN_STEPS,
            metavar="N",
            help="Render --sample-prompt clips every N steps onto RUN_DIR/samples/index.html.",
            rich_help_panel=RUN,
        ),
    ] = 0,
    sample_prompt: Annotated[
        list[str] | None,
        typer.Option(
            "--sample-prompt",
            metavar="PROMPT",
            help="A prompt to render (repeatable).",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    sample_steps: Annotated[
        int,
        number_option(
            "--sample-steps",
            whole=True,
            minimum=1,
            maximum=MAX_STEPS,
            metavar="N",
            help="Euler steps per sample.",
            rich_help_panel=RUN,
        ),
    ] = 25,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in RUN_DIR from its last checkpoint.",
            rich_help_panel=RUN,
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            "-f",
            help="Start over in a RUN_DIR that holds a run "
            "(its prepared data is reused when it matches).",
            rich_help_panel=RUN,
        ),
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="One JSON object per line on stdout (step, checkpoint, sample, summary events).",
            rich_help_panel=opt.OUTPUT,
        ),
    ] = False,
    quiet: opt.Quiet = False,
    *,
    shared: Shared,
) -> None:
    from fluxmusic_cli.errors import UsageError
    from fluxmusic_cli.training.loop import (
        DEFAULT_FULL_LR,
        DEFAULT_LORA_LR,
        TrainSettings,
    )
    from fluxmusic_cli.training.run import TrainRequest, preflight, run_training
    from fluxmusic_cli.training.samples import SampleSettings

    if sample_every and not sample_prompt:
        raise UsageError("--sample-every needs at least one --sample-prompt.")
    settings = TrainSettings(
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr if lr is not None else (DEFAULT_FULL_LR if full else DEFAULT_LORA_LR),
        full=full,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_targets=lora_targets.value,
        latents=latents.value,
        caption_dropout=caption_dropout,
        seed=seed,
        ema_decay=ema_decay,
        gradient_checkpointing=gradient_checkpointing,
    )
    settings.check()
    samples = None
    if sample_prompt:
        samples = SampleSettings(
            prompts=tuple(sample_prompt), every=sample_every, steps=sample_steps
        )
    request = TrainRequest(
        data=data,
        run_dir=output,
        settings=settings,
        audio_dir=audio_dir,
        save_every=save_every,
        samples=samples,
        resume=resume,
        force=force,
    )
    options = shared.engine.engine_options()
    main_process = os.environ.get("RANK", "0") == "0"  # under `accelerate launch`, rank 0
    if main_process:
        from fluxmusic_cli.cli.setup import make_engine

        preflight(request, options)  # before any download or encoding
        make_engine(options, progress=None, yes=shared.engine.yes, quiet=quiet or json_out)
    with _TrainProgress(
        quiet=quiet or not main_process, json_out=json_out and main_process
    ) as report:
        result = run_training(request, options, on_event=report)
    if main_process:
        _report(result, full=settings.full, engine=shared.engine, quiet=quiet or json_out)


def _report(result, *, full: bool, engine: EngineGroup, quiet: bool) -> None:
    """The skipped files, then (unless quiet) what was written and how to use it."""
    record = result.record
    _warn_skipped(record["data"]["skipped"])
    if quiet:
        return
    first, last = record["loss_first10"], record["loss_last10"]
    err.print(
        f"[green]wrote[/green] {result.output}  ({record['step']} steps, loss "
        f"{first:.4f} -> {last:.4f} over the first/last 10, "
        f"{record['data']['segments']} segments of {record['data']['tracks']} tracks)"
    )
    err.print(f"loss curve: {result.loss_png}")
    # Every weight source that is not built in is named, so the line works in any shell.
    output = str(result.output)
    use = engine.use_flags(output) if full else f"{engine.use_flags()} --lora {shlex.quote(output)}"
    err.print(f'use it: fluxmusic generate "..." {use}', markup=False, soft_wrap=True)


def _warn_skipped(skipped: list[dict[str, Any]], shown: int = 20) -> None:
    for item in skipped[:shown]:
        warn(f"skipped {item['source']}: {item['reason']}")
    if len(skipped) > shown:
        warn(f"... and {len(skipped) - shown} more skipped (all are listed in RUN_DIR/run.json).")


class _TrainProgress:
    """Rich bars (preparation, then steps with loss, steps/s and ETA) or JSON lines."""

    def __init__(self, *, quiet: bool, json_out: bool) -> None:
        self.quiet = quiet
        self.json_out = json_out
        self.progress = None
        self.tasks: dict[str, Any] = {}
        self.t0: float | None = None
        self.first_step = 0

    def __enter__(self):
        if not self.quiet and not self.json_out and err.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=err,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def __call__(self, event) -> None:
        if self.json_out:
            self._json(event)
        elif not self.quiet:
            self._human(event)

    def _json(self, event) -> None:
        if event.kind == "step":
            emit_json_line(
                {"event": "step", "step": event.step, "loss": event.loss, "lr": event.lr}
            )
        elif event.kind == "prepare":
            emit_json_line(
                {"event": "prepare", **event.detail, "completed": event.step, "total": event.total}
            )
        elif event.kind == "summary":
            emit_json_line(
                {"event": "summary", "step": event.step, "loss": event.loss, "record": event.detail}
            )
        else:
            emit_json_line({"event": event.kind, "step": event.step, **event.detail})

    def _human(self, event) -> None:
        if event.kind in ("checkpoint", "sample"):
            where = event.detail.get("path") or event.detail.get("page")
            err.print(f"step {event.step}: {event.kind} {where}")
            return
        if self.progress is None:
            return
        if event.kind == "prepare":
            stage = event.detail["stage"]
            if stage not in self.tasks:
                self.tasks[stage] = self.progress.add_task(stage, total=event.total, info="")
            self.progress.update(self.tasks[stage], completed=event.step, total=event.total)
        elif event.kind == "step":
            now = time.perf_counter()
            if "train" not in self.tasks:
                self.t0, self.first_step = now, event.step - 1
                self.tasks["train"] = self.progress.add_task(
                    "training", total=event.total, completed=event.step - 1, info=""
                )
            rate = (event.step - self.first_step) / max(now - (self.t0 or now), 1e-9)
            self.progress.update(
                self.tasks["train"],
                completed=event.step,
                info=f"loss {event.loss:.4f}  {rate:.2f} steps/s",
            )
