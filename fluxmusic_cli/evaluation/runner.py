"""One evaluation run: collect the sets, embed what is not cached, compute the metrics.

The metrics are the registry in `evaluation.scores`; this module only walks it. Never prints:
progress goes through the `Hooks` callables and everything a person should read (warnings,
caveats) is returned in the `EvalReport`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluxmusic_cli.evaluation import audio_io, inputs, scores
from fluxmusic_cli.evaluation.embedding import EMBEDDERS, ClipEmbeddings, ClipSet, Setup
from fluxmusic_cli.evaluation.request import EvalRequest, Hooks


@dataclass
class SetSummary:
    folder: str
    n: int
    duration_min_s: float
    duration_mean_s: float
    duration_max_s: float
    sample_rates: list[int]
    channels: list[int]
    silent: list[str]


# One row per generated clip: where it is, then each metric's columns (None: not computed).
PerFileRow = dataclasses.make_dataclass(
    "PerFileRow",
    [
        ("id", str),
        ("path", str),
        ("reference_path", "str | None", None),
        ("duration_s", float, 0.0),
        ("sample_rate", int, 0),
        *[(name, "float | None", None) for name in scores.PER_FILE_COLUMNS],
    ],
)


@dataclass
class EvalReport:
    metrics: dict[str, dict[str, Any]]
    generated: SetSummary
    reference: SetSummary | None
    per_file: list[Any]  # PerFileRow
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    resampler: str = audio_io.RESAMPLER

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _summary(folder: Path, s: ClipSet) -> SetSummary:
    durations = [s.info[c.id].duration for c in s.clips]
    return SetSummary(
        folder=str(folder),
        n=len(s.clips),
        duration_min_s=round(min(durations), 3),
        duration_mean_s=round(float(np.mean(durations)), 3),
        duration_max_s=round(max(durations), 3),
        sample_rates=sorted({s.info[c.id].sample_rate for c in s.clips}),
        channels=sorted({s.info[c.id].channels for c in s.clips}),
        silent=[c.id for c in s.clips if s.info[c.id].silent],
    )


def _load_set(folder: Path, label: str, prompts: dict[str, str], hooks: Hooks) -> ClipSet:
    clips = inputs.with_prompts(inputs.collect(folder, label), prompts)
    hooks.stage(f"Reading {label} clips", len(clips))
    info = {}
    for clip in clips:
        info[clip.id] = audio_io.inspect(clip.path)
        hooks.advance()
    return ClipSet(label, clips, info)


def _silence_warnings(sets: list[ClipSet]) -> list[str]:
    out = []
    for s in sets:
        silent = [c.id for c in s.clips if s.info[c.id].silent]
        if silent:
            out.append(
                f"{len(silent)} {s.label} clip(s) are silent (peak below -100 dBFS): "
                f"{inputs.listing(silent)}. They are scored as they are and pull every metric."
            )
    return out


def _needs(chosen: list[scores.Metric], request: EvalRequest) -> dict[str, bool]:
    """Embedder -> whether the reference set goes through it too, in `EMBEDDERS` order."""
    wanted: dict[str, bool] = {}
    for metric in chosen:
        for need in metric.needs(request):
            wanted[need.embedder] = wanted.get(need.embedder, False) or need.reference
    return {name: wanted[name] for name in EMBEDDERS if name in wanted}


def _pairs(
    chosen: list[scores.Metric], gen: ClipSet, ref: ClipSet | None, allow_missing: bool
) -> tuple[list[tuple[inputs.ClipFile, inputs.ClipFile]], list[str]]:
    """Clips paired by id (with warnings on the unpaired) when a chosen metric needs pairs."""
    paired = [m.title for m in chosen if m.reference == "pairs"]
    if not paired or ref is None:
        return [], []
    pairs, problems = inputs.pair(gen.clips, ref.clips, allow_missing)
    users = " and ".join(paired)
    return pairs, [
        f"{users} uses the {len(pairs)} ids present in both sets; {p}." for p in problems
    ]


def _score(chosen: list[scores.Metric], scoring: scores.Scoring) -> scores.Scored:
    """Every chosen metric computed in registry order, their outcomes merged."""
    merged = scores.Scored()
    for metric in chosen:
        scored = metric.compute(scoring)
        merged.results.update(scored.results)
        for clip_id, row in scored.per_file.items():
            merged.per_file.setdefault(clip_id, {}).update(row)
        merged.warnings += scored.warnings
        merged.notes += scored.notes
    return merged


def run_eval(request: EvalRequest, hooks: Hooks | None = None) -> EvalReport:
    """Compute the requested metrics for `request.generated` (against `request.reference`)."""
    from fluxmusic_cli.engine.devices import resolve_device

    hooks = hooks or Hooks()

    # 1. Read both sets (ids, prompts, formats, content hashes) and choose the metrics.
    prompts = inputs.read_prompts(request.prompts_file) if request.prompts_file else {}
    gen = _load_set(request.generated, "generated", prompts, hooks)
    ref = _load_set(request.reference, "reference", {}, hooks) if request.reference else None
    has_prompts = any(c.prompt for c in gen.clips)
    chosen, notes = scores.choose(request.metrics, ref is not None, has_prompts)

    # 2. Pair the sets by id when a metric compares clip to clip.
    pairs, warnings = _pairs(chosen, gen, ref, request.allow_missing)
    sets = [gen] if ref is None else [gen, ref]
    warnings += _silence_warnings(sets)

    # 3. Set up the embedders the metrics need (weights resolved, loading deferred), then embed
    #    (cached per file by content hash).
    setup = Setup(request, resolve_device(request.device), hooks, sets, {}, warnings)
    needs = _needs(chosen, request)
    embedders: dict[str, ClipEmbeddings] = {name: EMBEDDERS[name](setup) for name in needs}
    gen_emb = {name: e.run(gen, hooks) for name, e in embedders.items()}
    ref_emb = {name: e.run(ref, hooks) for name, e in embedders.items() if ref and needs[name]}

    # 4. Compute each metric, in registry order.
    def texts(prompts: list[str]) -> np.ndarray:
        return embedders["clap"].texts(prompts)  # type: ignore[attr-defined]

    scoring = scores.Scoring(
        request, gen.clips, ref.clips if ref else None, pairs, gen_emb, ref_emb, texts
    )
    scored = _score(chosen, scoring)
    values: dict[str, dict[str, Any]] = {c.id: {} for c in gen.clips}
    for g, r in pairs:
        values[g.id]["reference_path"] = str(r.path)
    for clip_id, row in scored.per_file.items():
        values[clip_id].update(row)
    return EvalReport(
        metrics=scored.results,
        generated=_summary(request.generated, gen),
        reference=_summary(request.reference, ref) if ref and request.reference else None,
        per_file=[_row(c, gen, values[c.id]) for c in gen.clips],
        warnings=warnings + scored.warnings,
        notes=notes + scored.notes,
        models=setup.models,
        cache={e.name: e.stats() for e in embedders.values()},
    )


def _row(clip: inputs.ClipFile, s: ClipSet, values: dict[str, Any]) -> Any:
    info = s.info[clip.id]
    return PerFileRow(
        id=clip.id,
        path=str(clip.path),
        duration_s=round(info.duration, 3),
        sample_rate=info.sample_rate,
        **values,
    )
