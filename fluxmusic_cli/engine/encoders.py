"""The text encoders from their hub layouts: T5's encoder stack (an encoder-only copy, or Stable
Diffusion 3's `text_encoder_3/` and `tokenizer_3/`), CLAP's text tower (built from its config
and filled from the file, checked tensor by tensor), their tokenizers, and the checks made
before any weights load (kind and width from the config alone). `conditioning` runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxmusic_cli.engine.quiet import quiet_libraries
from fluxmusic_cli.errors import CheckpointError, UsageError, first_line

if TYPE_CHECKING:
    import torch

NAMES = {"t5": "T5", "clap": "CLAP"}
# Words any real English tokenizer keeps apart; a vocabulary-less one maps them all to <unk>.
_PROBE_WORDS = ("piano", "guitar", "drums", "violin", "ambient")


def _dtype_kwarg() -> str:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def check_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Raise CheckpointError unless distinct words get distinct, known ids.

    Under transformers 5 a tokenizer built from vocab files with its constructor comes out with
    an empty vocabulary that maps every word to <unk>, without any error.
    """
    unk = tokenizer.unk_token_id
    seen = set()
    for word in _PROBE_WORDS:
        ids = tuple(tokenizer(word, add_special_tokens=False)["input_ids"])
        if not ids or all(i == unk for i in ids) or ids in seen:
            raise CheckpointError(
                f"The tokenizer in {directory} maps distinct words to the same ids (an empty "
                "or wrong vocabulary).",
                hint=(
                    "Check that its tokenizer files (spiece.model or tokenizer.json, vocab.json "
                    "+ merges.txt) are complete; converting spiece.model needs the sentencepiece "
                    "and protobuf packages."
                ),
            )
        seen.add(ids)


def load_tokenizer(directory: Path) -> Any:
    """`AutoTokenizer.from_pretrained(directory)`, checked with `check_tokenizer`."""
    from transformers import AutoTokenizer

    try:
        with quiet_libraries():
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError, ImportError) as err:
        raise CheckpointError(
            f"Could not load the tokenizer in {directory}: {first_line(err)}",
            hint="Re-download it, or check that sentencepiece and protobuf are installed.",
        ) from err
    check_tokenizer(tokenizer, directory)
    return tokenizer


def t5_dirs(root: Path) -> tuple[Path, Path]:
    """(model folder, tokenizer folder) of a T5 source in either hub layout.

    Encoder-only copies (city96, mcmonkey, google's own) keep everything at the top; Stable
    Diffusion 3 keeps the encoder in `text_encoder_3/` and the tokenizer in `tokenizer_3/`.
    """
    root = Path(root)
    if (root / "text_encoder_3" / "config.json").is_file():
        return root / "text_encoder_3", root / "tokenizer_3"
    if (root / "config.json").is_file():
        return root, root
    raise CheckpointError(
        f"{root} holds no T5 encoder: expected config.json at its top or in text_encoder_3/ "
        "(the Stable Diffusion 3 layout)."
    )


def load_t5(root: Path, device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(tokenizer, T5EncoderModel) from a T5 repo folder; every encoder tensor must be present."""
    import torch
    from transformers import T5EncoderModel

    model_dir, tok_dir = t5_dirs(root)
    tokenizer = load_tokenizer(tok_dir)
    try:
        with quiet_libraries():
            model, info = T5EncoderModel.from_pretrained(
                str(model_dir),
                output_loading_info=True,
                **{_dtype_kwarg(): dtype or torch.float32},
            )
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"Could not load the T5 encoder in {model_dir}: {first_line(err)}"
        ) from err
    absent = sorted(info.get("missing_keys") or []) + sorted(
        str(k) for k in (info.get("mismatched_keys") or [])
    )
    if absent:
        raise CheckpointError(
            f"The T5 weights in {model_dir} lack {len(absent)} encoder tensors "
            f"(e.g. {absent[0]}), which would stay random.",
            hint="Point --t5 at a T5-v1.1-XXL encoder (see `fluxmusic models`).",
        )
    return tokenizer, model.to(device).eval().requires_grad_(False)


def _clap_weight_files(root: Path) -> list[Path]:
    if (root / "model.safetensors").is_file():
        return [root / "model.safetensors"]
    index = root / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [root / name for name in sorted(set(weight_map.values()))]
    if (root / "pytorch_model.bin").is_file():
        return [root / "pytorch_model.bin"]
    raise CheckpointError(f"{root} holds no CLAP weights (model.safetensors or pytorch_model.bin).")


def read_clap_text_weights(root: Path) -> dict[str, torch.Tensor]:
    """The text tower's tensors as stored, keys without the `text_model.` prefix.

    A whole-ClapModel repo prefixes them with `text_model.`; a saved bare text tower does not.
    """
    import torch
    from safetensors import safe_open

    stored: dict[str, torch.Tensor] = {}
    for path in _clap_weight_files(Path(root)):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                    stored[key] = f.get_tensor(key)
        else:
            stored.update(torch.load(path, map_location="cpu", weights_only=True))
    if any(k.startswith("text_model.") for k in stored):
        prefix = "text_model."
        return {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
    if "embeddings.word_embeddings.weight" in stored:
        return stored
    raise CheckpointError(
        f"The weights in {root} hold no CLAP text tower (no text_model.* tensors).",
        hint="Point --clap at laion/larger_clap_music or a copy of it.",
    )


def _load_verified(model: Any, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load `state` into `model`, then check every stored tensor arrived unchanged."""
    import torch

    own = model.state_dict()
    # Buffers such as position_ids are derived, and older files may omit them.
    buffers = {name for name, _ in model.named_buffers()}
    missing = [k for k in own if k not in state and k not in buffers]
    unexpected = [k for k in state if k not in own and k not in buffers]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise CheckpointError(
            f"The CLAP text tower in {where} does not match its config: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} misshapen tensors (e.g. {first})."
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    loaded = model.state_dict()
    differ = [
        k
        for k, v in state.items()
        if k in loaded and not torch.equal(loaded[k], v.to(loaded[k].dtype))
    ]
    if differ:
        raise CheckpointError(
            f"The CLAP text tower loaded from {where} differs from the file in {len(differ)} "
            f"tensors (e.g. {differ[0]})."
        )


def load_clap_text(root: Path, device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(tokenizer, ClapTextModel) holding the file's real text tower, verified tensor by tensor.

    `ClapTextModel.from_pretrained` on a whole-ClapModel repo silently keeps random weights
    (the keys carry a `text_model.` prefix), so the tower is built from its config and filled
    from the file directly.
    """
    import torch
    from transformers import AutoConfig, ClapTextModel

    root = Path(root)
    tokenizer = load_tokenizer(root)
    try:
        with quiet_libraries():
            config = AutoConfig.from_pretrained(str(root))
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"Could not read the CLAP config in {root}: {first_line(err)}"
        ) from err
    text_config = getattr(config, "text_config", config)
    if getattr(text_config, "model_type", "") != "clap_text_model":
        raise CheckpointError(
            f"{root} is not a CLAP model (config model_type {config.model_type!r}).",
            hint="Point --clap at laion/larger_clap_music or a copy of it.",
        )
    model = ClapTextModel(text_config)
    _load_verified(model, read_clap_text_weights(root), root)
    model = model.to(device=device, dtype=dtype or torch.float32)
    return tokenizer, model.eval().requires_grad_(False)


_KINDS_OF = {"t5": ("t5", "umt5", "mt5"), "clap": ("clap", "clap_text_model")}
_OPTION = {"t5": "--t5", "clap": "--clap"}


def encoder_shape(kind: str, root: Path) -> tuple[str, int | None]:
    """(model_type, output width) of an encoder folder, from its config alone (no weights)."""
    folder = t5_dirs(root)[0] if kind == "t5" else Path(root)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"Could not read {folder / 'config.json'}: {err}") from err
    model_type = str(config.get("model_type", ""))
    if kind == "t5":
        return model_type, config.get("d_model")
    text = config.get("text_config") or config
    return model_type, text.get("hidden_size")


def check_encoder(kind: str, root: Path, expected_width: int | None) -> None:
    """Refuse, before loading any weights, an encoder of another kind (swapped --t5 and
    --clap) or of a width the transformer does not take."""
    model_type, width = encoder_shape(kind, root)
    name = NAMES[kind]
    if model_type not in _KINDS_OF[kind]:
        other = next((k for k, types in _KINDS_OF.items() if model_type in types), None)
        swapped = f" ({_OPTION[other]} takes it: are --t5 and --clap swapped?)" if other else ""
        raise UsageError(
            f"{_OPTION[kind]} {root} holds a {model_type or 'unknown'} model, not {name}{swapped}."
        )
    if expected_width is not None and width is not None and int(width) != int(expected_width):
        raise UsageError(
            f"{_OPTION[kind]} {root} gives {width}-wide embeddings, but the model expects "
            f"{expected_width}: this {name} encoder does not fit the chosen --model.",
            hint="Use the encoder the model was trained with (see `fluxmusic models`).",
        )
