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

from fluxmusic_cli.engine import encoders
from fluxmusic_cli.engine.embedding_cache import EmbeddingCache, EmbeddingKey
from fluxmusic_cli.engine.quiet import quiet_libraries
from fluxmusic_cli.engine.sources import DEFAULT_SOURCES, ComponentRef, Kind, parse_ref
from fluxmusic_cli.errors import ModelMissingError, UsageError

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

_OUTPUT = {"t5": "last_hidden_state", "clap": "pooler_output"}


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
        name = encoders.NAMES.get(self.encoder, self.encoder)
        return (
            f"{name} reads {self.limit} tokens and the prompt "
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


_LOADERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "t5": encoders.load_t5,
    "clap": encoders.load_clap_text,
}
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
            encoders.check_encoder(kind, root, self.expect(kind) if self.expect else None)
            self._models[kind] = _LOADERS[kind](root, self.device, self.dtype)
        return self._models[kind]

    def _forward(self, kind: str, prompts: list[str], mode: str) -> tuple[Any, list[Truncation]]:
        tokenizer, model = self._encoder(kind)
        batch = _INPUTS[kind](prompts, tokenizer, mode)
        out = run_encoder(model, batch, self.device, _OUTPUT[kind])
        return out, batch.truncated

    def _missing_hint(self, kind: str, mode: str, err: ModelMissingError) -> ModelMissingError:
        ref = self.refs[kind]
        name = encoders.NAMES[kind]
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
