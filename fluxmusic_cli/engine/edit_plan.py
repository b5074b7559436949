"""From an edit request and its recording's length to the frames the sampler works on.

Everything here is decided before any model loads, so a bad value costs nothing: which latent
frames are generated, the step sampling starts from, how many windows an extension takes, how
long the output is, and what the record says about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluxmusic_cli.engine import editing, sampling
from fluxmusic_cli.engine.audio_in import GRID_SAMPLES, check_length, padded_length
from fluxmusic_cli.engine.requests import EditRequest

SAMPLES_PER_FRAME = sampling.SAMPLES_PER_LATENT_FRAME


@dataclass(frozen=True)
class EditPlan:
    operation: str
    frames: int  # latent frames of the recording as the edit starts from it
    start: int  # Euler step k the sampling starts at (N: from noise)
    output_samples: int
    original_samples: int  # samples of the recording spliced back into kept regions
    cut_samples: int | None = None  # extend: the recording cut to whole 80 ms first
    mask: list[int] = field(default_factory=list)  # remix / repaint: 1 = generate
    target_frames: int = 0  # extend
    context: int = 0  # extend, frames
    seam: int = 0  # loop, frames
    passes: int = 1  # windows (extend) or sampling passes, for progress
    record: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user is told of the plan

    @property
    def loop(self) -> bool:
        return self.operation == "loop"


def plan_edit(request: EditRequest) -> EditPlan:
    request.check()
    source = request.source
    n_audio = int(source.samples.shape[0])
    from_latent = source.latent is not None
    steps = request.steps
    if not from_latent:
        check_length(n_audio, name=source.shown)
    if request.operation == "extend":
        return _plan_extend(request, n_audio)
    frames = int(source.latent.shape[1]) if from_latent else padded_length(n_audio) // 640
    output = frames * SAMPLES_PER_FRAME if from_latent else n_audio
    if request.operation == "remix":
        start = editing.remix_start(request.strength, steps)
        return EditPlan(
            operation="remix",
            frames=frames,
            start=start,
            output_samples=output,
            original_samples=min(n_audio, output),
            mask=[1] * frames,
            record={"strength": request.strength, "start_step": start},
        )
    if request.operation == "repaint":
        mask, snapped = editing.repaint_mask(request.regions, source.duration, frames)
        regions = [[a, b] for a, b in request.regions]
        return EditPlan(
            operation="repaint",
            frames=frames,
            start=steps,
            output_samples=output,
            original_samples=min(n_audio, output),
            mask=mask,
            record={"regions": regions, "regions_snapped": snapped},
        )
    seam = editing.seam_frames(request.seam, frames)
    output = frames * SAMPLES_PER_FRAME  # a loop is always its whole period long
    notes = []
    if request.seam is None and seam < sampling.DEFAULT_SEAM_FRAMES:
        notes.append(
            f"seam {seam * sampling.FRAME_SECONDS:.2f} s, the longest that fits this "
            f"{frames * sampling.FRAME_SECONDS:.2f} s loop (the default is "
            f"{sampling.DEFAULT_SEAM_FRAMES * sampling.FRAME_SECONDS:.2f} s)"
        )
    return EditPlan(
        operation="loop",
        frames=frames,
        start=steps,
        output_samples=output,
        original_samples=min(n_audio, output),
        seam=seam,
        record=_seam_record(seam, chosen=request.seam is None),
        notes=notes,
    )


def _seam_record(seam: int, *, chosen: bool) -> dict[str, Any]:
    """What a loop's record says of its seam: the one used (what replays it), and whether the
    tool chose it (no --seam given)."""
    seconds = round(seam * sampling.FRAME_SECONDS, 2)
    return {"seam": seconds, "seam_frames": seam, "seam_auto": chosen}


def _plan_extend(request: EditRequest, n_audio: int) -> EditPlan:
    """The recording cut to whole 80 ms and its latent continued; the output is the input plus
    what was asked (the new latent frames rounded up to the grid, the audio trimmed back)."""
    source = request.source
    if source.latent is not None:
        # The recording's length is its latent's: the audio rounded up to the grid.
        frames, cut = int(source.latent.shape[1]), None
        length = frames * SAMPLES_PER_FRAME
        kept = min(n_audio, length)
    else:
        cut = n_audio - n_audio % GRID_SAMPLES
        frames, kept, length = cut // SAMPLES_PER_FRAME, cut, n_audio
    current = length / sampling.SAMPLE_RATE
    add = editing.extend_seconds(request.add, request.to, current)
    context = editing.context_frames(request.context)
    output = length + sampling.num_samples(add)
    if request.to is not None:
        output = sampling.num_samples(request.to)
    target = padded_length(output) // SAMPLES_PER_FRAME
    windows = len(sampling.window_plan(frames, target, context))
    generated = round((output - kept) / sampling.SAMPLE_RATE, 6)
    notes = []
    if cut is not None and cut < n_audio:
        notes.append(
            f"{output / sampling.SAMPLE_RATE:.2f} s in all ({current:.2f} s + {add:.2f} s): the "
            f"recording's first {cut / sampling.SAMPLE_RATE:.2f} s (whole 80 ms) kept, "
            f"{generated:.2f} s generated after it"
        )
    return EditPlan(
        operation="extend",
        frames=frames,
        start=request.steps,
        output_samples=output,
        original_samples=kept,
        cut_samples=cut,
        target_frames=target,
        context=context,
        passes=windows,
        record={
            "add": round(add, 6),
            "to": request.to,
            "generated": generated,
            "context": request.context,
            "context_frames": context,
            "cut_samples": cut,
        },
        notes=notes,
    )
