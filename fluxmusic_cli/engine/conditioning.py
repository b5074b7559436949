"""Text conditioning: prompts -> T5 features `txt` (B, 256, 4096) and CLAP vector `y` (B, 768).

Two tokenisation modes. `training`, what the released weights saw: T5 ids are the prompt's
tokens with EOS, cut at 256 and filled to 256 with id 1, run with a mask over the fill; CLAP is
padded to 77 and run with its mask. `reference-script`, what the published sampling script
did: both padded to 256 with the tokenizer's pad id and run without a mask.

A left-out encoder contributes its output for "" (training dropped each caption to ""
independently), read from the embedding cache so the encoder need not be loaded at all.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fluxmusic_cli.engine.embedding_cache import EmbeddingCache, EmbeddingKey
from fluxmusic_cli.engine.quiet import quiet_libraries
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, ComponentRef, Kind, parse_ref
from fluxmusic_cli.errors import CheckpointError, ModelMissingError, UsageError, first_line

if TYPE_CHECKING:
    import torch

Mode = Literal["training", "reference-script"]
Encoders = Literal["both", "t5", "clap"]
MODES: tuple[str, ...] = ("training", "reference-script")
ENCODER_SUBSETS: tuple[str, ...] = ("both", "t5", "clap")
KINDS: tuple[Kind, ...] = ("t5", "clap")

T5_TOKENS = 256
CLAP_TRAINING_TOKENS = 77
SCRIPT_TOKENS = 256
# The training data loader filled T5 ids with the literal 1 (T5's EOS), not the pad id 0.
T5_TRAINING_FILL_ID = 1

_NAMES = {"t5": "T5", "clap": "CLAP"}
_OUTPUT = {"t5": "last_hidden_state", "clap": "pooler_output"}
# Words any real English tokenizer keeps apart; a vocabulary-less one maps them all to <unk>.
_PROBE_WORDS = ("piano", "guitar", "drums", "violin", "ambient")


# -- tokenisation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Truncation:
    """A prompt longer than an encoder reads: `tokens` needed, `limit` kept.

    `dropped_from` is the character offset of the first word the encoder does not fully see.
    """

    encoder: str
    prompt: str
    tokens: int
    limit: int
    dropped_from: int

    @property
    def first_dropped_word(self) -> str:
        rest = self.prompt[self.dropped_from :].split(maxsplit=1)
        return rest[0] if rest else ""

    @property
    def first_dropped_index(self) -> int:
        """1-based position of that word among the prompt's words."""
        return len(self.prompt[: self.dropped_from].split()) + 1

    def __str__(self) -> str:
        head = self.prompt if len(self.prompt) <= 40 else self.prompt[:37] + "..."
        return (
            f"{_NAMES.get(self.encoder, self.encoder)} reads {self.limit} tokens and the prompt "
            f'"{head}" has {self.tokens}: it is ignored from word {self.first_dropped_index} '
            f'("{self.first_dropped_word}") on.'
        )


@dataclass
class TokenBatch:
    """Encoder inputs; `attention_mask` is None where the encoder runs unmasked."""

    input_ids: torch.Tensor  # (B, L) int64
    attention_mask: torch.Tensor | None  # (B, L) int64, 1 on real tokens
    truncated: list[Truncation] = field(default_factory=list)


def _word_start(text: str, pos: int) -> int:
    pos = min(pos, len(text))
    while pos < len(text) and text[pos].isspace():
        pos += 1
    while pos > 0 and not text[pos - 1].isspace():
        pos -= 1
    return pos


def _tokenize(
    prompts: Sequence[str],
    tokenizer: Any,
    *,
    encoder: str,
    length: int,
    fill_id: int,
    masked: bool,
) -> TokenBatch:
    import torch

    enc = tokenizer(
        list(prompts),
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_attention_mask=False,
        verbose=False,
    )
    ids_rows, mask_rows, truncated = [], [], []
    for prompt, ids, offsets in zip(prompts, enc["input_ids"], enc["offset_mapping"], strict=True):
        n = len(ids)
        if n > length:
            # Cut as the tokenizer's own truncation does: content goes, the closing token stays.
            start = _word_start(prompt, offsets[length - 1][0])
            if prompt[start:].strip():  # losing only trailing spaces loses nothing
                truncated.append(Truncation(encoder, prompt, n, length, start))
            ids = ids[: length - 1] + ids[-1:]
        ids_rows.append(list(ids) + [fill_id] * (length - len(ids)))
        mask_rows.append([1] * len(ids) + [0] * (length - len(ids)))
    mask = torch.tensor(mask_rows, dtype=torch.long) if masked else None
    return TokenBatch(torch.tensor(ids_rows, dtype=torch.long), mask, truncated)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UsageError(f"Unknown conditioning mode {mode!r}; choose one of {', '.join(MODES)}.")


def t5_inputs(prompts: Sequence[str], tokenizer: Any, mode: Mode = "training") -> TokenBatch:
    """T5 ids (B, 256): fill id 1 plus mask in training mode; pad id, no mask, in the script's."""
    _check_mode(mode)
    training = mode == "training"
    fill = T5_TRAINING_FILL_ID if training else tokenizer.pad_token_id
    return _tokenize(
        prompts, tokenizer, encoder="t5", length=T5_TOKENS, fill_id=fill, masked=training
    )


def clap_inputs(prompts: Sequence[str], tokenizer: Any, mode: Mode = "training") -> TokenBatch:
    """CLAP ids: 77 tokens with a mask in training mode, 256 without one in the script's."""
    _check_mode(mode)
    training = mode == "training"
    return _tokenize(
        prompts,
        tokenizer,
        encoder="clap",
        length=CLAP_TRAINING_TOKENS if training else SCRIPT_TOKENS,
        fill_id=tokenizer.pad_token_id,
        masked=training,
    )


def run_encoder(model: Any, batch: TokenBatch, device: Any, output: str) -> torch.Tensor:
    """One forward pass; returns `output` of the model as float32 on the CPU."""
    import torch

    mask = None if batch.attention_mask is None else batch.attention_mask.to(device)
    # Without a mask (training mode) transformers advises one on stderr; it is left out on
    # purpose, as the model was trained.
    with torch.inference_mode(), quiet_libraries():
        out = model(input_ids=batch.input_ids.to(device), attention_mask=mask)
    return getattr(out, output).float().cpu()


# -- loading ---------------------------------------------------------------------------------


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
    name = _NAMES[kind]
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


_LOADERS: dict[str, Callable[..., tuple[Any, Any]]] = {"t5": load_t5, "clap": load_clap_text}
_INPUTS: dict[str, Callable[..., TokenBatch]] = {"t5": t5_inputs, "clap": clap_inputs}


# -- the conditioner -------------------------------------------------------------------------


@dataclass
class TextConditioning:
    """Per input prompt, in input order: `txt` (B, 256, d_t5) and `y` (B, d_clap), float32 CPU."""

    txt: torch.Tensor
    y: torch.Tensor
    truncated: list[Truncation] = field(default_factory=list)


def _local_revision(path: Path) -> str:
    """Stands in for a hub revision: changes when any file under a local source changes, by
    size, mtime and content (whole small files; the first and last 64 KiB of large ones)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        st = p.stat()
        digest.update(
            f"{p.relative_to(path) if p != path else p.name}:{st.st_size}:"
            f"{st.st_mtime_ns}\n".encode()
        )
        with open(p, "rb") as fh:
            if st.st_size <= 1 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 16))
                fh.seek(-(1 << 16), os.SEEK_END)
                digest.update(fh.read(1 << 16))
    return "local-" + digest.hexdigest()[:16]


def _revision(ref: ComponentRef) -> str | None:
    """What identifies the weights: a local folder's fingerprint, or the hub commit the
    revision resolves to in the cache now (None until it is downloaded)."""
    if ref.path is not None:
        return _local_revision(ref.path) if ref.path.exists() else None
    from fluxmusic_cli.engine import hub

    return hub.resolved_commit(ref)


class TextConditioner:
    """Turns prompts into `TextConditioning`, loading each needed encoder lazily, once.

    `resolve` turns a ref into a local folder (downloading if allowed) and raises
    ModelMissingError when it cannot.
    """

    def __init__(
        self,
        t5: ComponentRef | None = None,
        clap: ComponentRef | None = None,
        encoders: Encoders = "both",
        mode: Mode = "training",
        device: Any = "cpu",
        dtype: Any = None,
        cache: EmbeddingCache | None = None,
        resolve: Callable[[ComponentRef], Path] | None = None,
        use_prompt_cache: bool = True,
        *,
        expect: Callable[[str], int | None] | None = None,
    ) -> None:
        import torch

        if encoders not in ENCODER_SUBSETS:
            raise UsageError(
                f"Unknown encoder subset {encoders!r}; choose one of {', '.join(ENCODER_SUBSETS)}."
            )
        _check_mode(mode)
        if resolve is None:
            raise UsageError("TextConditioner needs a resolve function for its sources.")
        self.refs: dict[str, ComponentRef] = {
            "t5": t5 or parse_ref("t5", DEFAULT_SOURCES["t5"]),
            "clap": clap or parse_ref("clap", DEFAULT_SOURCES["clap"]),
        }
        self.active = KINDS if encoders == "both" else (encoders,)
        self.mode: str = mode
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.cache = cache if cache is not None else EmbeddingCache()
        self.resolve = resolve
        self.use_prompt_cache = use_prompt_cache
        self.expect = expect  # kind -> the width the transformer takes (checked before loading)
        self._models: dict[str, tuple[Any, Any]] = {}
        self._revisions: dict[str, str] = {}

    # keys and loading

    def key(self, kind: str, prompt: str, mode: str | None = None) -> EmbeddingKey:
        ref = self.refs[kind]
        # The kind is part of the identity: one folder given as --t5 and as --clap differs.
        identity = f"{kind}:{ref.identity}"
        if kind not in self._revisions:
            found = _revision(ref)
            if found is None:
                # Weights not on disk (yet, or removed once "" was stored): the empty prompt's
                # stored embedding still serves a left-out encoder; nothing else matches.
                known = self.cache.stored_revision(identity, mode or self.mode)
                revision = known if prompt == "" and known else ref.revision
                return EmbeddingKey(identity, revision, mode or self.mode, prompt)
            self._revisions[kind] = found
        return EmbeddingKey(identity, self._revisions[kind], mode or self.mode, prompt)

    def _encoder(self, kind: str) -> tuple[Any, Any]:
        if kind not in self._models:
            root = self.resolve(self.refs[kind])
            check_encoder(kind, root, self.expect(kind) if self.expect else None)
            self._models[kind] = _LOADERS[kind](root, self.device, self.dtype)
        return self._models[kind]

    def _forward(self, kind: str, prompts: list[str], mode: str) -> tuple[Any, list[Truncation]]:
        tokenizer, model = self._encoder(kind)
        batch = _INPUTS[kind](prompts, tokenizer, mode)
        out = run_encoder(model, batch, self.device, _OUTPUT[kind])
        return out, batch.truncated

    def _missing_hint(self, kind: str, mode: str, err: ModelMissingError) -> ModelMissingError:
        ref = self.refs[kind]
        name = _NAMES[kind]
        if ref.hub is not None:
            from fluxmusic_cli.engine import hub

            fix = (
                f"Run `{hub.download_command(ref)}` once: it fetches {ref.hub.repo_id} and "
                f"stores {name}'s empty-prompt embedding, after which {name} is not loaded again."
            )
        else:
            fix = f"Make {ref.path} hold the {name} encoder, or choose --encoders both."
        return ModelMissingError(
            f"--encoders leaves {name} out, which needs its stored empty-prompt embedding "
            f"({mode} mode), and neither it nor the {name} weights are on disk.",
            hint=f"{fix} ({err.message})",
        )

    # embeddings

    def empty_embedding(self, kind: str, mode: str | None = None) -> torch.Tensor:
        """The encoder's output for "" (one row), from the cache or computed once and stored."""
        key = self.key(kind, "", mode)
        stored = self.cache.get(key)
        if stored is not None:
            return stored
        try:
            self._encoder(kind)
        except ModelMissingError as err:
            if kind in self.active:
                raise
            raise self._missing_hint(kind, key.mode, err) from err
        out, _ = self._forward(kind, [""], key.mode)
        self.cache.put(key, out[0])
        return out[0]

    def precompute_empty(
        self, kinds: Sequence[str] = KINDS, modes: Sequence[str] = MODES
    ) -> list[EmbeddingKey]:
        """Store the "" embeddings of `kinds` in each mode (what `download` does once)."""
        keys = []
        for kind in kinds:
            for mode in modes:
                _check_mode(mode)
                self.empty_embedding(kind, mode)
                keys.append(self.key(kind, "", mode))
        return keys

    def _rows(self, kind: str, unique: list[str], truncated: list[Truncation]) -> dict[str, Any]:
        if kind not in self.active:
            empty = self.empty_embedding(kind)
            return dict.fromkeys(unique, empty)
        rows: dict[str, Any] = {}
        if "" in unique:
            rows[""] = self.empty_embedding(kind)
        todo = [p for p in unique if p != ""]
        if self.use_prompt_cache:
            for p in todo:
                hit = self.cache.load(self.key(kind, p))
                if hit is not None:
                    rows[p] = hit.tensor
                    if "truncation" in hit.info:
                        truncated.append(Truncation(**json.loads(hit.info["truncation"])))
        # Each prompt alone: in a batch its rows would round differently with its companions
        # (the matmul kernels block by batch size), so a clip's bits would depend on what the
        # cache held and on what was encoded beside it.
        for p in (p for p in todo if p not in rows):
            out, cut = self._forward(kind, [p], self.mode)
            rows[p] = out[0]
            truncated.extend(cut)
            if self.use_prompt_cache:
                info = {"truncation": json.dumps(asdict(cut[0]))} if cut else {}
                self.cache.put(self.key(kind, p), out[0], info)
        return rows

    def encode(self, prompts: Sequence[str]) -> TextConditioning:
        """Conditioning for `prompts` (in order); each distinct prompt is encoded once, alone, so
        its embedding is the same whatever else is encoded or stored."""
        import torch

        prompts = list(prompts)
        if not prompts:
            raise UsageError("No prompt to encode.")
        unique = list(dict.fromkeys(prompts))
        truncated: list[Truncation] = []
        rows = {kind: self._rows(kind, unique, truncated) for kind in KINDS}
        txt = torch.stack([rows["t5"][p] for p in prompts])
        y = torch.stack([rows["clap"][p] for p in prompts])
        return TextConditioning(txt=txt, y=y, truncated=truncated)

    def release(self) -> None:
        """Drop the loaded encoders and give their memory back."""
        self._models.clear()
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
