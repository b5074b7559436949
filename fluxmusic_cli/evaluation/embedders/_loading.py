"""Reading published `.pth` checkpoints with `torch.load(weights_only=True)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluxmusic_cli.errors import CheckpointError


def _numpy_globals() -> list[Any]:
    # The PANNs checkpoint also stores its training sampler (numpy int arrays pickled by numpy
    # 1.x). Allowing numpy's array reconstructor keeps the load data-only; nothing else runs.
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    kinds = (np.int64, np.int32, np.float32, np.float64, np.bool_)
    dtype_types = {type(np.dtype(t)) for t in kinds}
    return [
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
        *sorted(dtype_types, key=lambda t: t.__name__),
    ]


def load_checkpoint(path: Path, what: str) -> Any:
    """Load a checkpoint's object tree (tensors, dicts, numpy arrays) without running code."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"The {what} weights file does not exist: {path}") from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(
            f"Could not read {path} as {what} weights ({type(exc).__name__}).",
            hint="The file may be truncated or another model's checkpoint; delete it and "
            "let the tool download it again, or pass the right file.",
        ) from exc


def strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"The {what} checkpoint does not match the {what} layout: {' '.join(first)}"
        ) from exc
