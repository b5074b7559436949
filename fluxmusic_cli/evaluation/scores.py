"""The metrics `fluxmusic eval` reports, as a registry.

Each `Metric` declares what it needs (embeddings of which sets, a reference folder, prompts),
computes its numbers from those embeddings, and names the per-file columns it fills and the
table rows it shows. The runner and the CLI only walk `METRICS`, so adding a metric means adding
one entry here. The maths itself lives in `evaluation.metrics`; nothing here reads files, loads
models or prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from fluxmusic_cli.engine import registry
from fluxmusic_cli.errors import UsageError
from fluxmusic_cli.evaluation.inputs import ClipFile, listing

if TYPE_CHECKING:
    import numpy as np

    from fluxmusic_cli.evaluation.request import EvalRequest

Arrays = dict[str, "np.ndarray"]
Embeddings = dict[str, dict[str, Arrays]]  # embedder -> clip id -> arrays
TableRow = tuple[str, str, str]  # metric label, value, what it is based on
FAD_EMBEDDERS = ("vggish", "clap")
T = TypeVar("T")


@dataclass(frozen=True)
class Need:
    """One embedder a metric reads, and whether it also reads the reference set through it."""

    embedder: str  # "vggish", "panns" or "clap"
    reference: bool = False


@dataclass
class Scoring:
    """What a metric computes from: the sets, their pairs and the embeddings asked for."""

    request: EvalRequest
    generated: list[ClipFile]
    reference: list[ClipFile] | None
    pairs: list[tuple[ClipFile, ClipFile]]
    gen: Embeddings
    ref: Embeddings
    texts: Callable[[list[str]], np.ndarray]  # CLAP text embeddings, one row per prompt


@dataclass
class Scored:
    """A metric's outcome: report entries, per-file values, and what a person should read."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_file: dict[str, dict[str, float]] = field(default_factory=dict)  # id -> column -> value
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    name: str  # as typed in --metrics, and its key in the report
    title: str  # as named in messages
    needs: Callable[[EvalRequest], tuple[Need, ...]]
    compute: Callable[[Scoring], Scored]
    table: Callable[[dict[str, dict[str, Any]]], list[TableRow]]
    reference: Literal["none", "set", "pairs"] = "none"  # "pairs": matched by clip id
    prompts: bool = False
    columns: tuple[str, ...] = ()  # per-file columns it fills


def _unless_refused(out: Scored, label: str, compute: Callable[[], T]) -> T | None:
    """`compute()`, or None with a warning when the maths refuses its input (a ValueError)."""
    try:
        return compute()
    except ValueError as exc:
        out.warnings.append(f"{label} skipped: {exc}.")
        return None


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- FAD (and FAD-infinity) -----------------------------------------------------------------

_FAD_ROWS = {"vggish": "frames", "clap": "audio"}  # embedder -> the rows FAD is taken over


def _fad_needs(request: EvalRequest) -> tuple[Need, ...]:
    if request.fad_embedder not in FAD_EMBEDDERS:
        raise UsageError(f"--fad-embedder must be one of {', '.join(FAD_EMBEDDERS)}.")
    return (Need(request.fad_embedder, reference=True),)


def _stack_rows(emb: Embeddings, key: str, clips: list[ClipFile]) -> np.ndarray:
    import numpy as np

    return np.concatenate([np.atleast_2d(emb[key][c.id][_FAD_ROWS[key]]) for c in clips])


def _fad(s: Scoring) -> Scored:
    from fluxmusic_cli.evaluation import metrics as maths

    assert s.reference is not None
    out = Scored()
    method, key = s.request.sqrt_method, s.request.fad_embedder
    gen_rows = _stack_rows(s.gen, key, s.generated)
    ref_rows = _stack_rows(s.ref, key, s.reference)
    dim = gen_rows.shape[1]
    floor = maths.min_rows_for_stable_fd(dim)
    for label, r in (("generated", gen_rows), ("reference", ref_rows)):
        if r.shape[0] < floor:
            out.warnings.append(
                f"FAD: only {r.shape[0]} {label} embeddings for {dim} dimensions (fewer "
                f"than {floor}); the covariance is poorly estimated and FAD is biased upward."
            )
    if min(gen_rows.shape[0], ref_rows.shape[0]) < 2:
        raise UsageError("FAD needs at least two embeddings in each set.")
    ref_stats = maths.gaussian_stats(ref_rows)
    out.results["fad"] = {
        "value": maths.frechet_distance(maths.gaussian_stats(gen_rows), ref_stats, method),
        "embedder": key,
        "dim": dim,
        "n_generated_embeddings": int(gen_rows.shape[0]),
        "n_reference_embeddings": int(ref_rows.shape[0]),
        "n_generated": len(s.generated),
        "n_reference": len(s.reference),
        "sqrt_method": method,
    }
    if key == "vggish":  # a clip's own frames give it a FAD of its own against the reference
        for c in s.generated:
            own = s.gen[key][c.id]["frames"]
            if own.shape[0] >= 2:
                fd = maths.frechet_distance(maths.gaussian_stats(own), ref_stats, method)
                out.per_file[c.id] = {"fad_own": fd}
    if s.request.fad_infinity:
        inf = _unless_refused(
            out, "FAD-infinity", lambda: maths.fad_infinity(gen_rows, ref_stats, method=method)
        )
        if inf is not None:
            out.results["fad_infinity"] = {
                "value": inf.intercept,
                "r2": inf.r2,
                "slope": inf.slope,
                "sizes": list(inf.sizes),
                "values": list(inf.values),
            }
    return out


def _fad_table(m: dict[str, dict[str, Any]]) -> list[TableRow]:
    f = m["fad"]
    rows = [
        (
            f"FAD ({f['embedder']})",
            _fmt(f["value"]),
            f"{f['n_generated']} vs {f['n_reference']} clips; "
            f"{f['n_generated_embeddings']} vs {f['n_reference_embeddings']} "
            f"{f['dim']}-d embeddings",
        )
    ]
    if "fad_infinity" in m:
        fi = m["fad_infinity"]
        rows.append(
            (
                "FAD-inf",
                _fmt(fi["value"]),
                f"intercept over n = {fi['sizes'][0]}..{fi['sizes'][-1]}, R^2 = {fi['r2']:.3f}",
            )
        )
    return rows


# -- KL divergence over paired clips --------------------------------------------------------


def _kl(s: Scoring) -> Scored:
    import numpy as np

    from fluxmusic_cli.evaluation import metrics as maths

    out = Scored()
    if not s.pairs:
        return out
    kl = maths.kl_divergence(
        np.stack([s.ref["panns"][r.id]["logits"] for _, r in s.pairs]),
        np.stack([s.gen["panns"][g.id]["logits"] for g, _ in s.pairs]),
    )
    out.results["kl"] = {
        "value": kl.softmax,
        "kl_sigmoid": kl.sigmoid,
        "n_pairs": len(s.pairs),
        "direction": "reference || generated",
    }
    for (g, _), soft, sig in zip(s.pairs, kl.per_item_softmax, kl.per_item_sigmoid):
        out.per_file[g.id] = {"kl_softmax": float(soft), "kl_sigmoid": float(sig)}
    return out


def _kl_table(m: dict[str, dict[str, Any]]) -> list[TableRow]:
    k = m["kl"]
    return [
        ("KL (softmax)", _fmt(k["value"]), f"{k['n_pairs']} pairs, ref || gen"),
        ("KL (sigmoid)", _fmt(k["kl_sigmoid"]), f"{k['n_pairs']} pairs"),
    ]


# -- Inception score ------------------------------------------------------------------------


def _is(s: Scoring) -> Scored:
    import numpy as np

    from fluxmusic_cli.evaluation import metrics as maths

    out = Scored()
    splits = s.request.is_splits
    logits = np.stack([s.gen["panns"][c.id]["logits"] for c in s.generated])
    if logits.shape[0] < 10 * splits:
        out.warnings.append(
            f"IS: {logits.shape[0]} clips over {splits} splits is fewer than 10 per split; the "
            "score and its std are unstable."
        )
    score = _unless_refused(out, "IS", lambda: maths.inception_score(logits, splits=splits))
    if score is not None:
        out.results["is"] = {
            "value": score.mean,
            "std": score.std,
            "n": len(s.generated),
            "splits": splits,
            "seed": maths.IS_SEED,
        }
    return out


def _is_table(m: dict[str, dict[str, Any]]) -> list[TableRow]:
    i = m["is"]
    return [("IS", f"{i['value']:.3f} ± {i['std']:.3f}", f"{i['n']} clips, {i['splits']} splits")]


# -- CLAP score (text-audio cosine similarity) ----------------------------------------------


def _clap(s: Scoring) -> Scored:
    import numpy as np

    from fluxmusic_cli.evaluation import metrics as maths

    out = Scored()
    prompted = [c for c in s.generated if c.prompt]
    unprompted = [c.id for c in s.generated if not c.prompt]
    if unprompted:
        message = f"{len(unprompted)} generated clip(s) have no prompt: {listing(unprompted)}"
        if not s.request.allow_missing:
            raise UsageError(
                message + ".",
                hint="Give them prompts with --prompts FILE, "
                "or pass --allow-missing to score only the prompted clips.",
            )
        out.warnings.append(message + "; the CLAP score leaves them out.")
    text = s.texts([c.prompt or "" for c in prompted])
    audio = np.stack([s.gen["clap"][c.id]["audio"] for c in prompted])
    scores = maths.cosine_similarities(text, audio)
    for c, score in zip(prompted, scores):
        out.per_file[c.id] = {"clap_score": float(score)}
    model = s.request.clap_model
    out.results["clap"] = {"value": float(scores.mean()), "n": len(prompted), "model": model}
    if model == registry.CLAP.repo_id:
        out.notes.append(
            f"CLAP score uses {model}, the same model whose text tower conditioned the "
            "generator; this can flatter the score."
        )
    return out


def _clap_table(m: dict[str, dict[str, Any]]) -> list[TableRow]:
    c = m["clap"]
    return [("CLAP score", _fmt(c["value"]), f"{c['n']} clips, {c['model']}")]


# -- the registry ---------------------------------------------------------------------------

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("fad", "FAD", _fad_needs, _fad, _fad_table, reference="set", columns=("fad_own",)),
        Metric(
            "kl",
            "KL",
            lambda request: (Need("panns", reference=True),),
            _kl,
            _kl_table,
            reference="pairs",
            columns=("kl_softmax", "kl_sigmoid"),
        ),
        Metric("is", "IS", lambda request: (Need("panns"),), _is, _is_table),
        Metric(
            "clap",
            "CLAP score",
            lambda request: (Need("clap"),),
            _clap,
            _clap_table,
            prompts=True,
            columns=("clap_score",),
        ),
    )
}

# The per-file columns, in the order the first release wrote them (last metric's first).
PER_FILE_COLUMNS: tuple[str, ...] = tuple(
    col for m in reversed(METRICS.values()) for col in m.columns
)


def choose(
    names: tuple[str, ...] | None, has_reference: bool, has_prompts: bool
) -> tuple[list[Metric], list[str]]:
    """The metrics to compute, with notes on those skipped; `names=None` means all that fit."""
    by_reference = [m.title for m in METRICS.values() if m.reference != "none"]
    by_prompts = [m.title for m in METRICS.values() if m.prompts]
    if names:
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise UsageError(
                f"Unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}."
            )
        chosen = [METRICS[n] for n in dict.fromkeys(names)]
        if not has_reference and any(m.reference != "none" for m in chosen):
            raise UsageError(
                f"{' and '.join(by_reference)} compare against a reference set; "
                "pass --reference DIR."
            )
        for m in chosen:
            if m.prompts and not has_prompts:
                raise UsageError(
                    f"The {m.title} needs the prompts: none found in a batch manifest, sidecar "
                    "records or --prompts FILE."
                )
        return chosen, []
    notes = []
    if not has_reference:
        notes.append(f"{' and '.join(by_reference)} skipped: they need --reference DIR.")
    if not has_prompts:
        notes += [
            f"{title} skipped: no prompts found (manifest, sidecars or --prompts)."
            for title in by_prompts
        ]
    chosen = [
        m
        for m in METRICS.values()
        if (has_reference or m.reference == "none") and (has_prompts or not m.prompts)
    ]
    return chosen, notes
