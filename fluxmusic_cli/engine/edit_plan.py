"""From an edit request and its recording's length to the frames the sampler works on.

Everything here is decided before any model loads, so a bad value costs nothing: which latent
frames are generated, the step sampling starts from, how many windows an extension takes, how
long the output is, and what the record says about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fluxmusic_cli.engine import editing, sampling
from fluxmusic_cli.engine.audio_in import GRID_SAMPLES, padded_length
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

    @property
    def loop(self) -> bool:
        return self.operation == "loop"


def plan_edit(request: EditRequest) -> EditPlan:
    request.check()
    source = request.source
    n_audio = int(source.samples.shape[0])
    from_latent = source.latent is not None
    steps = request.steps
    if request.operation == "extend":
        return _plan_extend(request, n_audio)
    frames = int(source.latent.shape[1]) if from_latent else padded_length(n_audio) // 640
    if not from_latent and n_audio < GRID_SAMPLES:
        frames = 0  # prepare() refuses it with the reason
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
    return EditPlan(
        operation="loop",
        frames=frames,
        start=steps,
        output_samples=output,
        original_samples=min(n_audio, output),
        seam=seam,
        record={"seam": request.seam, "seam_frames": seam},
    )


def _plan_extend(request: EditRequest, n_audio: int) -> EditPlan:
    source = request.source
    if source.latent is not None:
        frames, cut = int(source.latent.shape[1]), None
        kept = min(n_audio, frames * SAMPLES_PER_FRAME)
    else:
        cut = n_audio - n_audio % GRID_SAMPLES
        frames, kept = cut // SAMPLES_PER_FRAME, cut
    current = frames * sampling.FRAME_SECONDS
    add = editing.extend_seconds(request.add, request.to, current)
    context = editing.context_frames(request.context)
    target = frames + sampling.latent_length(add)
    windows = len(sampling.window_plan(frames, target, context))
    return EditPlan(
        operation="extend",
        frames=frames,
        start=request.steps,
        output_samples=frames * SAMPLES_PER_FRAME + sampling.num_samples(add),
        original_samples=kept,
        cut_samples=cut,
        target_frames=target,
        context=context,
        passes=windows,
        record={
            "add": round(add, 6),
            "to": request.to,
            "context": request.context,
            "context_frames": context,
            "cut_samples": cut,
        },
    )
