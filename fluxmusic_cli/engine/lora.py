"""LoRA adapters on diffusers' `FluxTransformer2DModel`: add for training, save, apply at inference.

Files use the key names of diffusers' Flux LoRA loaders (`transformer.<module>.lora_A.weight`,
`.lora_B.weight`, the peft config under the `lora_adapter_metadata` safetensors key), so
`FluxTransformer2DModel.load_lora_adapter(..., prefix="transformer")` reads them as they are.
At inference the low-rank products are merged into the weights (W += scale * alpha / r * B A):
no adapter layers stay in the model, so a scale of 0 leaves it exactly the base model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli import atomic
from fluxmusic_cli.errors import CheckpointError, DivergedError, UsageError

if TYPE_CHECKING:
    import torch

PREFIX = "transformer"
METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
OWN_METADATA_KEY = "fluxmusic"
ADAPTER = "default"

# Which linears of both block kinds (names as in FluxTransformer2DModel) an adapter trains, as
# regexes peft matches against whole module names (so the model-level `proj_out` is never
# adapted). "attn-mlp-mod" adds the adaLN modulation linears, through which the timestep and
# the CLAP vector act: on the tiny test model they halve the overfit test's distance.
_ATTN_MLP = (
    r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj"
    r"|add_v_proj|to_add_out)|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2))"
    r"|single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out)"
)
_MOD = (
    r"|transformer_blocks\.\d+\.norm1(_context)?\.linear"
    r"|single_transformer_blocks\.\d+\.norm\.linear"
)
TARGETS: dict[str, str] = {"attn-mlp": _ATTN_MLP, "attn-mlp-mod": _ATTN_MLP + _MOD}
DEFAULT_TARGETS = "attn-mlp-mod"
_KEY = re.compile(rf"^{PREFIX}\.(.+)\.lora_([AB])\.weight$")


@dataclass(frozen=True)
class LoraSpec:
    path: Path
    scale: float


def parse_spec(text: str) -> LoraSpec:
    """`FILE[:SCALE]` -> LoraSpec; a scale that is not a finite number is a UsageError."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
        except ValueError:
            if Path(text).exists():  # a colon inside the path itself (C:\..., odd names)
                return LoraSpec(Path(text), 1.0)
            raise UsageError(
                f"--lora {text} has a scale that is not a number ({tail!r}); use FILE[:SCALE], "
                "e.g. lora.safetensors:0.8."
            ) from None
        if not math.isfinite(scale):
            raise UsageError(f"--lora {text} has a scale that is not a finite number.")
        return LoraSpec(Path(head), scale)
    return LoraSpec(Path(text), 1.0)


def parse_specs(values: list[str] | tuple[str, ...] | None) -> tuple[tuple[str, float], ...]:
    """Repeated `--lora` values as the engine's `loras` option: ((file, scale), ...)."""
    specs = [parse_spec(v) for v in values or ()]
    return tuple((str(s.path), s.scale) for s in specs)


# -- training -------------------------------------------------------------------------------------


def lora_config(rank: int, alpha: float | None = None, targets: str = DEFAULT_TARGETS):
    from peft import LoraConfig

    if rank < 1:
        raise UsageError(f"--lora-rank must be at least 1, got {rank}.")
    if targets not in TARGETS:
        raise UsageError(f"--lora-targets must be one of {', '.join(TARGETS)}, got {targets!r}.")
    return LoraConfig(
        r=rank,
        lora_alpha=float(alpha if alpha is not None else rank),
        init_lora_weights=True,  # B = 0: training starts from exactly the base model
        target_modules=TARGETS[targets],
    )


def add_lora(
    model, rank: int, alpha: float | None = None, targets: str = DEFAULT_TARGETS
) -> list[str]:
    """Inject a trainable adapter (peft) and freeze everything else; returns the adapted names."""
    from peft import inject_adapter_in_model

    model.requires_grad_(False)
    inject_adapter_in_model(lora_config(rank, alpha, targets), model, ADAPTER)
    names = sorted({n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if ".lora_" in n})
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name)
    return names


def lora_state_dict(model) -> dict[str, torch.Tensor]:
    """The adapter's tensors under diffusers' Flux key names, fp32, contiguous, on the CPU."""
    from peft.utils import get_peft_model_state_dict

    sd = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    return {f"{PREFIX}.{k}": v.detach().float().cpu().contiguous() for k, v in sd.items()}


def save_lora(
    model,
    path: Path,
    *,
    rank: int,
    alpha: float,
    info: dict[str, Any],
    targets: str = DEFAULT_TARGETS,
) -> Path:
    """Write the adapter as safetensors (atomically) with the peft config diffusers reads;
    weights that are not all finite are refused (DivergedError) and nothing is written."""
    from safetensors.torch import save

    tensors = lora_state_dict(model)
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise DivergedError(
            f"The adapter's {bad} holds NaN or infinite values; {path} was not written."
        )
    config = lora_config(rank, alpha, targets).to_dict()
    packed = {
        f"{PREFIX}.{k}": (sorted(v) if isinstance(v, set) else v)
        for k, v in config.items()
        if _jsonable(v)
    }
    metadata = {
        "format": "pt",
        METADATA_KEY: json.dumps(packed, sort_keys=True),
        OWN_METADATA_KEY: json.dumps(info, sort_keys=True, default=str),
    }
    atomic.make_folder(Path(path).parent)
    # Serialised here and written through the stream, so a full disk is a sentence.
    with atomic.writing_stream(Path(path)) as stream:
        stream.write(save(tensors, metadata=metadata))
    return Path(path)


def first_nonfinite(tensors: dict[str, Any]) -> str | None:
    """The name of the first tensor holding NaN or an infinity, or None when all are finite."""
    import torch

    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(sorted(value) if isinstance(value, set) else value)
    except TypeError:
        return False
    return True


# -- inference ---------------------------------------------------------------------------------


@dataclass
class LoraFile:
    path: Path
    sha256: str
    pairs: dict[str, tuple[Any, Any]]  # module name -> (A (r, in), B (out, r))
    alpha: float | None
    info: dict[str, Any]

    def scaling(self, rank: int) -> float:
        return (self.alpha if self.alpha is not None else rank) / rank


def read_lora(path: Path) -> LoraFile:
    """Read and check a LoRA file's structure (not yet against a model)."""
    from safetensors import SafetensorError, safe_open

    from fluxmusic_cli.engine.filehash import file_sha256

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--lora {path}: no such file.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"--lora {path}: not a readable safetensors file ({exc}).") from None
    halves: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        if m is None:
            raise CheckpointError(
                f"--lora {path}: not a FluxMusic LoRA (tensor {key!r} is not a "
                f"{PREFIX}.*.lora_A/lora_B weight)."
            )
        halves.setdefault(m.group(1), {})[m.group(2)] = value
    if not halves:
        raise CheckpointError(f"--lora {path}: holds no LoRA tensors.")
    pairs = {}
    for name, ab in halves.items():
        if set(ab) != {"A", "B"} or ab["A"].ndim != 2 or ab["B"].ndim != 2:
            raise CheckpointError(f"--lora {path}: the tensors of {name} are incomplete.")
        if ab["A"].shape[0] != ab["B"].shape[1]:
            raise CheckpointError(f"--lora {path}: the ranks of {name}'s halves differ.")
        pairs[name] = (ab["A"], ab["B"])
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise CheckpointError(
            f"--lora {path}: holds NaN or infinite values ({bad}), as a diverged training "
            "leaves; it cannot be applied."
        )
    alpha = None
    if METADATA_KEY in meta:
        try:
            config = json.loads(meta[METADATA_KEY])
        except json.JSONDecodeError:
            raise CheckpointError(f"--lora {path}: its adapter metadata is not JSON.") from None
        if config.get(f"{PREFIX}.use_dora"):
            raise CheckpointError(f"--lora {path}: DoRA adapters are not supported.")
        if config.get(f"{PREFIX}.lora_alpha") is not None:
            try:
                alpha = float(config[f"{PREFIX}.lora_alpha"])
            except (TypeError, ValueError):
                alpha = math.nan
            if not 0 < alpha < math.inf:
                raise CheckpointError(
                    f"--lora {path}: its lora_alpha ({config[f'{PREFIX}.lora_alpha']!r}) is not "
                    "a positive finite number; it cannot be applied."
                )
    try:
        info = json.loads(meta.get(OWN_METADATA_KEY, "{}"))
    except json.JSONDecodeError:
        info = {}
    return LoraFile(path=path, sha256=file_sha256(path), pairs=pairs, alpha=alpha, info=info)


def check_fits(lora: LoraFile, model) -> None:
    """Every adapted module exists in `model` with the adapter's shapes, else CheckpointError."""
    import torch

    modules = dict(model.named_modules())
    width = model.x_embedder.out_features
    for name, (a, b) in lora.pairs.items():
        module = modules.get(name)
        if not isinstance(module, torch.nn.Linear):
            raise CheckpointError(
                f"--lora {lora.path} is for another model: it adapts {name!r}, which this "
                f"FluxMusic transformer does not have."
            )
        sizes = {
            "inputs": (int(a.shape[1]), module.in_features),
            "outputs": (int(b.shape[0]), module.out_features),
        }
        differ = [
            f"{theirs} {kind} where this model's has {ours}"
            for kind, (theirs, ours) in sizes.items()
            if theirs != ours
        ]
        if differ:
            trained = lora.info.get("hidden")
            width_note = (
                f" (it was trained on a {trained}-wide model; this one is {width} wide)"
                if isinstance(trained, int) and trained != width
                else ""
            )
            raise CheckpointError(
                f"--lora {lora.path} was made for another model{width_note}: its adapter of "
                f"{name} has {' and '.join(differ)}."
            )


def apply_loras(model, loras: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    """Merge each (file, scale) into `model`'s weights; returns what the record keeps of each.

    All files are read and checked before any weight changes, so a bad file leaves the model
    untouched. A scale of 0 is checked and recorded but changes nothing.
    """
    import torch

    files = [(read_lora(Path(p)), float(s)) for p, s in loras]
    for lora, _ in files:
        check_fits(lora, model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for lora, scale in files:
            if scale == 0:
                continue
            for name, (a, b) in lora.pairs.items():
                weight = modules[name].weight
                k = scale * lora.scaling(a.shape[0])
                delta = k * (
                    b.to(weight.device, torch.float32) @ a.to(weight.device, torch.float32)
                )
                weight.copy_((weight.float() + delta).to(weight.dtype))
    return [
        {"file": str(lora.path.resolve()), "sha256": lora.sha256, "scale": scale}
        for lora, scale in files
    ]
