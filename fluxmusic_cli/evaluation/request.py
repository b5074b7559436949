"""What an evaluation run is asked to do (`EvalRequest`) and the progress callbacks it reports
through (`Hooks`): the types the runner, the metric registry and the embedders share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluxmusic_cli.engine import registry
from fluxmusic_cli.evaluation import metrics as maths


@dataclass
class EvalRequest:
    generated: Path
    reference: Path | None = None
    prompts_file: Path | None = None
    metrics: tuple[str, ...] | None = None  # None: every metric the inputs allow
    fad_embedder: str = "vggish"
    fad_infinity: bool = False
    sqrt_method: maths.SqrtMethod = "eigh"
    vggish_weights: Path | None = None
    panns_weights: Path | None = None
    clap_model: str = registry.CLAP.repo_id
    use_cache: bool = True
    allow_missing: bool = False
    is_splits: int = maths.IS_SPLITS
    device: str = "cpu"


@dataclass
class Hooks:
    """Progress callbacks; the CLI turns them into Rich bars."""

    stage: Callable[[str, int], None] = lambda label, total: None
    advance: Callable[[], None] = lambda: None
    download: Callable[[str, int, int | None], None] = lambda name, done, total: None
