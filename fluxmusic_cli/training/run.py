"""`train`: a folder of music and captions in, an adapter (or a full checkpoint) out.

`run_training` reads as its steps: check the memory a step needs and the run folder (locked
against a second run), find the tracks, prepare (encode once, cached), load the base model,
train with checkpoints, save the result and its record. It reports through a callback and
never prints. RUN_DIR holds:

    run.json                  the run's record (base model, data, every setting, losses)
    data/                     prepared latents and embeddings (reused by a rerun)
    checkpoints/step-NNNNNN/  trainable weights, optimiser, EMA, step and losses
    lora.safetensors + lora.json, or model.safetensors + model.json (`--full`)
    loss.png, samples/index.html (`--sample-every`)
    .fluxmusic-train.lock     while a run is writing (the kernel's lock; removed at the end)
"""

from __future__ import annotations

import platform
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fluxmusic_cli import __version__, atomic
from fluxmusic_cli.engine.filehash import file_sha256
from fluxmusic_cli.errors import (
    DivergedError,
    Interrupted,
    OutOfMemoryError,
    OutputError,
    UsageError,
)
from fluxmusic_cli.locks import FileLocks
from fluxmusic_cli.training.files import read_json, write_json
from fluxmusic_cli.training.loop import TrainSettings
from fluxmusic_cli.training.samples import SampleSettings

RECORD = "run.json"
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2
OUTPUT_NAMES = ("lora", "model")  # lora.safetensors/.json, model.safetensors/.json
LOCK = ".fluxmusic-train.lock"
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@dataclass(frozen=True)
class TrainRequest:
    data: Path
    run_dir: Path
    settings: TrainSettings = field(default_factory=TrainSettings)
    audio_dir: Path | None = None
    save_every: int = 0  # 0: only at the end (and on Ctrl-C)
    samples: SampleSettings | None = None
    resume: bool = False
    force: bool = False


@dataclass
class TrainEvent:
    """`kind`: prepare | step | checkpoint | sample | summary."""

    kind: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    lr: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[TrainEvent], None]


@dataclass
class TrainResult:
    output: Path
    record: dict[str, Any]
    loss_png: Path
    warnings: list[str] = field(default_factory=list)


def check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> Path | None:
    """Refuse a folder holding another run unless --resume/--force; the checkpoint to resume."""
    run_dir = Path(run_dir)
    if resume and force:
        raise UsageError("--resume continues the run in RUN_DIR and --force starts over: pick one.")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder.")
    has_run = (run_dir / RECORD).is_file()
    if resume:
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise UsageError(
                f"--resume: {run_dir} holds no checkpoint to continue from "
                f"({run_dir / CHECKPOINTS} is empty or missing).",
                hint="A checkpoint is saved every --save-every steps, on Ctrl-C and on SIGTERM; "
                "without one, run the same command with --force instead of --resume (the "
                "prepared data is reused).",
            )
        return latest
    if has_run and not force:
        record = read_json(run_dir / RECORD)
        raise UsageError(
            f"{run_dir} already holds a run ({record.get('status', 'unknown')} at step "
            f"{record.get('step', 0)}); add --resume to continue it or --force to start over "
            "(prepared data is reused when it matches)."
        )
    ours = ("data", LOCK)
    if run_dir.is_dir() and not has_run and any(p.name not in ours for p in run_dir.iterdir()):
        raise UsageError(
            f"{run_dir} is not empty and is not a fluxmusic run folder; choose another -o."
        )
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = Path(run_dir) / CHECKPOINTS
    found = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    return found[-1] if found else None


def preflight(request: TrainRequest, options) -> None:
    """What is refused before any download, preparation or model load, by the process that
    writes the run folder: the settings, a run already writing into RUN_DIR, a RUN_DIR
    holding a run (without --resume or --force), a rank above the model's width, a step that
    cannot fit the memory, and an unwritable RUN_DIR. Creates RUN_DIR; writes nothing else."""
    request.settings.check()
    run_dir = Path(request.run_dir)
    if run_dir.is_dir():
        _lock(run_dir).release()  # only to ask whether another run holds it
    check_run_dir(run_dir, resume=request.resume, force=request.force)
    _, place, settings = _placement(request, options)
    _check_fits(_model_shape(settings, options), settings, place)
    atomic.writable_folder(run_dir)


def _lock(run_dir: Path) -> FileLocks:
    """The run folder's lock, or a UsageError when another run holds it."""
    locks = FileLocks()
    if not locks.take(Path(run_dir) / LOCK):
        raise UsageError(
            f"Another fluxmusic train is writing into {run_dir}; wait for it to end or stop it "
            "(--force does not), or give this run another -o."
        )
    return locks


def _placement(request: TrainRequest, options):
    """Threads, the device and dtype, and the settings with their compute dtype."""
    from fluxmusic_cli.engine import devices, perf

    threads = perf.configure_threads(options.threads)
    place = devices.resolve_placement(options.device, options.dtype)
    if place.dtype == "fp16" and options.dtype == "fp16":
        raise UsageError(
            "--dtype fp16 cannot train (fp16 gradients underflow without loss scaling); "
            "use bf16 or fp32."
        )
    settings = replace(request.settings, autocast="fp32" if place.dtype == "fp16" else place.dtype)
    return threads, place, settings


def _model_shape(settings: TrainSettings, options):
    """The base model's shape (read without loading it); a rank above its width is refused."""
    from fluxmusic_cli.engine.sources import parse_ref
    from fluxmusic_cli.training import memory

    shape = memory.model_shape(parse_ref("transformer", options.model))
    memory.check_rank(shape, settings)
    return shape


def _check_fits(shape, settings: TrainSettings, place, data=None) -> None:
    """Refuse a step that cannot fit the device's memory (`training.memory`); before
    preparation, as if the data were one segment."""
    from fluxmusic_cli.engine import devices
    from fluxmusic_cli.training import memory

    memory.check_fits(
        shape,
        settings,
        dtype=settings.autocast,
        data=data or memory.DataSize(1, 1),
        available=devices.available_memory_bytes(place.device),
        device=place.device,
    )


def _clear_previous(run_dir: Path) -> None:
    """--force: drop the old run's checkpoints, outputs and samples; keep prepared data."""
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run_dir / "samples", ignore_errors=True)
    for name in (
        RECORD,
        "loss.png",
        *(f"{n}.{e}" for n in OUTPUT_NAMES for e in ("safetensors", "json")),
    ):
        (run_dir / name).unlink(missing_ok=True)


def make_accelerator(device: str):
    """One process needs no launcher; under `accelerate launch` this is one of N processes."""
    from accelerate import Accelerator

    return Accelerator(cpu=device == "cpu")


@dataclass
class _Run:
    """What the steps of one run share: the request, its settings and the process group."""

    request: TrainRequest
    settings: TrainSettings
    acc: Any
    emit: EventCallback
    threads: int
    place: Any  # engine.devices.Placement
    shape: Any  # training.memory.ModelShape
    locks: FileLocks = field(default_factory=FileLocks)  # the run folder's, in the first process

    @property
    def run_dir(self) -> Path:
        return Path(self.request.run_dir)

    @property
    def main(self) -> bool:
        return self.acc.is_main_process


def run_training(
    request: TrainRequest, options, *, on_event: EventCallback | None = None
) -> TrainResult:
    """Prepare, train and save (see the module docstring); `options` is an EngineOptions."""
    request.settings.check()
    # 1. Placement, the memory a step needs, and the run folder, locked: a new run, a forced
    #    restart, or the checkpoint to resume from (the first process decides; the others
    #    follow it).
    run, resume_from = _start(request, options, on_event or (lambda event: None))
    try:
        return _run(run, resume_from, options)
    finally:
        run.locks.release()


def _run(run: _Run, resume_from: Path | None, options) -> TrainResult:
    from fluxmusic_cli.engine.pipeline import Engine
    from fluxmusic_cli.training.data import find_tracks
    from fluxmusic_cli.training.loop import Trainer
    from fluxmusic_cli.training.memory import DataSize

    request = run.request
    # 2. Tracks and captions; 3. preparation, done once by the first process.
    tracks = find_tracks(request.data, audio_dir=request.audio_dir)
    engine = Engine(replace(options, memory="sequential"))
    data = _prepare(run, engine, tracks)
    if request.samples is None:
        engine.close()
    _check_fits(run.shape, run.settings, run.place, DataSize(data.segments, len(data.txt)))
    # 4. The base model, in fp32 (compute may run in bf16 under autocast).
    model, cfg, base = _load_base(engine, options)
    trainer = Trainer(model, data, run.settings, accelerator=run.acc)
    record = _record(
        request, run.settings, options, base, data.summary, trainer, run.acc, run.threads
    )
    if resume_from is not None:
        _resume(trainer, resume_from, data, request)
        record["resumed_from"] = str(resume_from)
    if run.main:
        write_json(run.run_dir / RECORD, record)
    # 5. Train; 6. the result and its record.
    extra = {"data_fingerprint": data.summary["fingerprint"]}
    _train(run, trainer, engine, data, extra, record)
    output = _save_result(run, trainer, cfg, base, extra, record)
    run.acc.wait_for_everyone()
    engine.close()
    return TrainResult(output=output, record=record, loss_png=run.run_dir / "loss.png")


def _start(request: TrainRequest, options, emit: EventCallback) -> tuple[_Run, Path | None]:
    threads, place, settings = _placement(request, options)
    shape = _model_shape(settings, options)
    _check_fits(shape, settings, place)  # before anything is written
    run = _Run(request, settings, make_accelerator(place.device), emit, threads, place, shape)
    if not run.main:
        return run, latest_checkpoint(run.run_dir) if request.resume else None
    atomic.writable_folder(run.run_dir)
    run.locks = _lock(run.run_dir)
    try:
        resume_from = check_run_dir(run.run_dir, resume=request.resume, force=request.force)
        for folder in (run.run_dir, run.run_dir / "data", run.run_dir / "samples"):
            atomic.clean_leftovers(folder)  # what a killed run left half-written
        return run, resume_from
    except BaseException:
        run.locks.release()
        raise


def _prepare(run: _Run, engine, tracks):
    from fluxmusic_cli.training import prepare as prep

    request = run.request
    prompts = ()
    if request.samples is not None:
        prompts = (*request.samples.prompts, request.samples.negative_prompt)
    with run.acc.main_process_first():
        if not run.main:
            return prep.load(run.run_dir / "data")
        if request.force:
            _clear_previous(run.run_dir)

        def progress(stage: str, done: int, total: int) -> None:
            run.emit(TrainEvent("prepare", done, total, detail={"stage": stage}))

        return prep.prepare(
            tracks, engine, run.run_dir / "data", prompts=prompts, progress=progress
        )


def _load_base(engine, options):
    """The base transformer on the CPU in fp32, its config, and what the record says of it."""
    import torch

    from fluxmusic_cli.engine import conversion
    from fluxmusic_cli.engine.checkpoint import load_transformer

    ref = engine.refs["transformer"]
    path = conversion.ensure_transformer(ref, token=options.token, offline=options.offline)
    model, cfg = load_transformer(path, device="cpu", dtype=torch.float32)
    base = {
        "source": ref.identity,
        "variant": ref.variant.name if ref.variant else None,
        "file": str(path),
        "sha256": file_sha256(path),
        "config": cfg.to_dict(),
    }
    return model, cfg, base


def _resume(trainer, resume_from: Path, data, request: TrainRequest) -> None:
    state = trainer.load_checkpoint(resume_from)
    if state.get("data_fingerprint") != data.summary["fingerprint"]:
        raise UsageError(
            f"--resume: the data in {request.data} is not what the checkpoint was trained "
            "on; train it in a new run folder, or use --force to start over."
        )


def _train(run: _Run, trainer, engine, data, extra, record) -> None:
    """Step to the end, with checkpoints and samples. The first Ctrl-C or SIGTERM lets the step
    in flight finish, then saves a checkpoint and stops; a second one stops at once. A loss
    that is not finite stops the run before it changes any weight."""
    s, request = run.settings, run.request
    with StopSignals() as stop:
        try:
            while trainer.step < s.steps:
                if _agreed(run.acc, stop.signum is not None):  # during a checkpoint or sample
                    _stop(run, trainer, extra, record, stop.signum or signal.SIGINT)
                loss = trainer.train_step()
                run.emit(TrainEvent("step", trainer.step, s.steps, loss=loss, lr=s.lr))
                if _agreed(run.acc, stop.signum is not None):  # during the step
                    _stop(run, trainer, extra, record, stop.signum or signal.SIGINT)
                if _due(request.save_every, trainer.step) and trainer.step < s.steps:
                    _checkpoint(trainer, run.run_dir, extra, record, run.emit, run.acc)
                if request.samples and _due(request.samples.every, trainer.step):
                    _sample(run, trainer, engine, data)
        except KeyboardInterrupt:
            if stop.signum is not None:  # the second signal
                raise Interrupted(
                    f"Stopped at once by a second signal at step {trainer.step}; "
                    f"{_last_checkpoint(run.run_dir)}.",
                    signum=stop.signum,
                ) from None
            if trainer.step > 0:
                _stop(run, trainer, extra, record, signal.SIGINT)
            raise
        except DivergedError as exc:
            if run.main:
                write_json(
                    run.run_dir / RECORD, {**record, **_finished(trainer), "status": "diverged"}
                )
            more = "" if s.full else f" or --lora-alpha (it is {s.alpha:g})"
            result = "model" if s.full else "adapter"
            raise DivergedError(
                f"{exc.message} The run stopped and wrote no {result}; "
                f"{_last_checkpoint(run.run_dir)}.",
                hint=f"Start over (--force) with a lower --lr (it is {s.lr:g}){more}.",
            ) from None
        except OutputError as exc:
            raise OutputError(
                exc.message,
                hint=f"{_last_checkpoint(run.run_dir).capitalize()}: once there is room again "
                "(or the cause is fixed), run the same command with --resume.",
            ) from None
        except RuntimeError as exc:
            text = str(exc).lower()
            if "out of memory" in text or "can't allocate memory" in text:
                raise OutOfMemoryError(
                    "Out of memory while training.",
                    hint="Try a smaller --batch-size (with --grad-accum to keep the batch), "
                    "--gradient-checkpointing, or a lower --lora-rank.",
                ) from exc
            raise


class StopSignals:
    """While training: the first SIGINT (Ctrl-C) or SIGTERM (what `timeout`, Slurm and
    `kill` send) is noted in `signum`, so the loop can stop between steps with a checkpoint;
    a second raises KeyboardInterrupt at once. Only the main thread can take signals; in
    another this notes nothing. The previous handlers come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _agreed(acc, stop: bool) -> bool:
    """Whether any process was asked to stop (all of them must stop at the same step)."""
    if acc.num_processes == 1:
        return stop
    import torch

    flag = torch.tensor([1.0 if stop else 0.0], device=acc.device)
    return bool(acc.reduce(flag, reduction="sum").item() > 0)


def _stop(run: _Run, trainer, extra, record, signum: int) -> None:
    """Save a checkpoint of the step just finished, then stop (exit 128 + the signal)."""
    by = SIGNAL_NAMES.get(signum, f"signal {signum}")
    if trainer.step == 0:
        raise Interrupted(f"Stopped by {by} before the first step; nothing to save.", signum=signum)
    folder = _checkpoint(
        trainer, run.run_dir, extra, record, run.emit, run.acc, status="interrupted"
    )
    raise Interrupted(
        f"Stopped by {by} at step {trainer.step}; checkpoint saved in {folder}. Continue with "
        "the same command and --resume.",
        signum=signum,
    )


def _last_checkpoint(run_dir: Path) -> str:
    last = latest_checkpoint(run_dir)
    return f"the last checkpoint, {last}, is intact" if last else "no checkpoint was saved yet"


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _save_result(run: _Run, trainer, cfg, base, extra, record) -> Path:
    """The last checkpoint, then the EMA weights as the adapter (or model) and the record."""
    s = run.settings
    _checkpoint(trainer, run.run_dir, extra, record, run.emit, run.acc)
    trainer.use_ema_weights()
    output = run.run_dir / ("model.safetensors" if s.full else "lora.safetensors")
    record.update(_finished(trainer))
    if not run.main:
        return output
    info = {"hidden": cfg.hidden, "base_sha256": base["sha256"], "step": trainer.step}
    if s.full:
        from fluxmusic_cli.training.loop import save_full

        save_full(trainer.base, output, info=info)
    else:
        from fluxmusic_cli.engine import lora

        lora.save_lora(
            trainer.base,
            output,
            rank=s.lora_rank,
            alpha=s.alpha,
            info=info,
            targets=s.lora_targets,
        )
    record["output"] = {"file": str(output), "sha256": file_sha256(output)}
    write_json(output.with_suffix(".json"), record)
    write_json(run.run_dir / RECORD, record)
    from fluxmusic_cli.training.plot import write_loss_png

    write_loss_png(run.run_dir / "loss.png", trainer.losses, title=run.run_dir.name)
    run.emit(TrainEvent("summary", trainer.step, s.steps, loss=record["final_loss"], detail=record))
    return output


def _checkpoint(trainer, run_dir: Path, extra, record, emit, acc, *, status=None) -> Path:
    """Save a checkpoint (the last two are kept), the record so far and loss.png."""
    from fluxmusic_cli.training.plot import write_loss_png

    folder = run_dir / CHECKPOINTS / f"step-{trainer.step:06d}"
    if acc.is_main_process:
        atomic.clean_leftovers(folder.parent)  # what a killed run left half-written
        trainer.save_checkpoint(folder, extra)
        for stale in sorted((run_dir / CHECKPOINTS).glob("step-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(stale, ignore_errors=True)
        progress = _finished(trainer)
        if status is not None:
            progress["status"] = status
        write_json(run_dir / RECORD, {**record, **progress})
        write_loss_png(run_dir / "loss.png", trainer.losses, title=run_dir.name)
        total = trainer.settings.steps
        emit(TrainEvent("checkpoint", trainer.step, total, detail={"path": str(folder)}))
    acc.wait_for_everyone()
    return folder


def _sample(run: _Run, trainer, engine, data) -> None:
    """Render the sample prompts at this step onto the run's listening page (first process)."""
    from fluxmusic_cli.training import samples

    if not run.main:
        return
    settings = run.request.samples
    decoder = engine.store.decoder()
    waves = samples.render(trainer.base, decoder, data.prompts, settings, seed=run.settings.seed)
    page = samples.write_step(run.run_dir / "samples", trainer.step, settings, waves)
    run.emit(TrainEvent("sample", trainer.step, run.settings.steps, detail={"page": str(page)}))


def _finished(trainer) -> dict[str, Any]:
    losses = trainer.losses
    k = min(10, len(losses))
    return {
        "status": "finished" if trainer.step >= trainer.settings.steps else "running",
        "step": trainer.step,
        "final_loss": losses[-1] if losses else None,
        "loss_first10": sum(losses[:k]) / k if k else None,
        "loss_last10": sum(losses[-k:]) / k if k else None,
    }


def _record(
    request, s: TrainSettings, options, base, summary, trainer, acc, threads: int
) -> dict[str, Any]:
    import accelerate
    import diffusers
    import peft
    import torch

    return {
        "tool": "fluxmusic",
        "version": __version__,
        "kind": "full" if s.full else "lora",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
        "step": 0,
        "base_model": base,
        "data": summary,
        "settings": {
            **s.to_dict(),
            "save_every": request.save_every,
            "samples": asdict(request.samples) if request.samples else None,
        },
        "engine": {
            "t5": options.t5,
            "clap": options.clap,
            "vae_vocoder": options.vae_vocoder,
            "encoders": options.encoders,
            "conditioning": options.conditioning,
            "device": str(acc.device),
            "threads": threads,
            "dtype": s.autocast,
            "processes": acc.num_processes,
        },
        "trainable_parameters": trainer.trainable_parameters,
        "adapted_modules": len(trainer.adapted),
        "random": "each draw derives from (seed, step, micro-batch); data order from (seed, epoch)",
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
            "python": platform.python_version(),
        },
    }
