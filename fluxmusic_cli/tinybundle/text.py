"""Tiny random-weight T5 and CLAP repos, laid out on disk exactly as their hub repos are.

They exist so tests (and `doctor`-style smoke runs) go through the real loading code without
downloading 10 GB. The tokenizers are real: a SentencePiece unigram model and a byte-level
BPE, both trained here on a few music captions, so distinct words get distinct ids.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

T5Layout = Literal["encoder-only", "sd3"]

# Our own captions; the tokenizers are trained on them, so tests should use their words.
CAPTIONS: tuple[str, ...] = (
    "A calm piano melody with soft strings and gentle rain in the background.",
    "Upbeat electronic dance track with heavy bass, bright synth leads and fast drums.",
    "An acoustic guitar plays a folk song while a man sings about the sea.",
    "Jazz trio with brushed drums, walking double bass and a mellow saxophone solo.",
    "Orchestral film score with brass fanfares, timpani rolls and a large choir.",
    "Lo-fi hip hop beat with vinyl crackle, warm keys and a relaxed groove.",
    "Heavy metal riff with distorted electric guitars and aggressive male vocals.",
    "A violin and cello duet, slow and sad, recorded in a small wooden room.",
    "Ambient drone with evolving pads, field recordings of birds and distant bells.",
    "Funky bass line, tight snare, wah guitar and a horn section playing short stabs.",
    "A female singer performs a soulful ballad over a Rhodes piano and light percussion.",
    "Reggae groove with offbeat guitar skanks, deep bass and a laid back organ.",
    "Classical string quartet playing a lively dance in a major key at a quick tempo.",
    "Techno loop at 128 bpm with a pounding kick, hi-hats and a filtered acid synth.",
    "Country song with banjo, fiddle, pedal steel and a warm baritone voice.",
    "Epic cinematic trailer music with huge drums, low brass and rising tension.",
    "Children's song with xylophone, ukulele, hand claps and a cheerful melody.",
    "Blues shuffle with harmonica, slide guitar and a gritty voice singing about trains.",
    "Latin salsa with congas, timbales, piano montuno and a bright trumpet line.",
    "Minimal electronic track, quiet and dark, with glitchy clicks and a sub bass hum.",
    "Indian classical raga with sitar, tabla and a steady tanpura drone.",
    "Punk rock with fast power chords, shouted vocals and crashing cymbals.",
    "Smooth bossa nova with nylon guitar, soft brushes and a whispered vocal.",
    "Low quality recording, noisy and muffled, of a gentle lullaby on a music box.",
)

_T5_EXTRA_IDS = 100
# Storage dtypes of the hub files: city96 stores bf16, SD3 stores fp16.
_T5_STORAGE = {"encoder-only": "bfloat16", "sd3": "float16"}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _seeded_model(build: Any, seed: int) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def _state_for_file(model: Any, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The state dict as `save_pretrained` writes it: tied aliases dropped, contiguous tensors."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        ptr = tensor.data_ptr()
        if tensor.is_floating_point() and ptr in seen:
            continue
        seen.add(ptr)
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[name] = tensor.detach().contiguous().clone()
    return out


def _train_spiece(vocab_size: int) -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def _t5_tokenizer_files(spiece: bytes) -> dict[str, dict[str, Any]]:
    extra = [f"<extra_id_{i}>" for i in range(_T5_EXTRA_IDS)]
    special = {
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "additional_special_tokens": extra,
    }
    config = special | {
        "tokenizer_class": "T5Tokenizer",
        "extra_ids": _T5_EXTRA_IDS,
        "model_max_length": 512,
        "legacy": True,
        "sp_model_kwargs": {},
        "clean_up_tokenization_spaces": True,
    }
    return {"special_tokens_map.json": special, "tokenizer_config.json": config}


def _t5_tokenizer_json(tok_dir: Path) -> None:
    """Add the fast-tokenizer file the SD3 repo ships, converted from spiece.model as it was."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.backend_tokenizer.save(str(tok_dir / "tokenizer.json"))


def write_tiny_t5(
    root: Path, layout: T5Layout = "encoder-only", d_model: int = 32, *, seed: int = 0
) -> Path:
    """Write a random T5-v1.1-style encoder repo under `root` and return `root`.

    `encoder-only` mirrors `city96/t5-v1_1-xxl-encoder-bf16` (all files at the top);
    `sd3` mirrors `stabilityai/stable-diffusion-3-medium-diffusers` (`text_encoder_3/` with two
    shards and an index, `tokenizer_3/`).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    if layout not in _T5_STORAGE:
        raise ValueError(f"unknown T5 layout {layout!r}")
    root = Path(root)
    spiece = _train_spiece(vocab_size=256)
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_proto=spiece).get_piece_size()
    num_heads = 4
    config: dict[str, Any] = {
        "architectures": ["T5EncoderModel"],
        "model_type": "t5",
        "d_model": d_model,
        "d_kv": d_model // num_heads,
        "d_ff": d_model * 5 // 2,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "num_heads": num_heads,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dense_act_fn": "gelu_new",
        "is_gated_act": True,
        "dropout_rate": 0.1,
        "layer_norm_epsilon": 1e-6,
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "use_cache": True,
        # Like 32100 -> 32128 in the real model: room for the sentinels, rounded up.
        "vocab_size": _round_up(pieces + _T5_EXTRA_IDS, 64),
        "torch_dtype": _T5_STORAGE[layout],
    }
    cfg = T5Config(**{k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")})
    model = _seeded_model(lambda: T5EncoderModel(cfg), seed)
    state = _state_for_file(model, getattr(torch, _T5_STORAGE[layout]))

    if layout == "encoder-only":
        model_dir = tok_dir = root
    else:
        model_dir, tok_dir = root / "text_encoder_3", root / "tokenizer_3"
    _write_json(model_dir / "config.json", config)
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "spiece.model").write_bytes(spiece)
    for name, data in _t5_tokenizer_files(spiece).items():
        _write_json(tok_dir / name, data)

    if layout == "encoder-only":
        save_file(state, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
        return root

    names = sorted(state)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    weight_map: dict[str, str] = {}
    for fname, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(model_dir / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, fname))
    total = sum(t.numel() * t.element_size() for t in state.values())
    _write_json(
        model_dir / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    _t5_tokenizer_json(tok_dir)
    return root


def _write_clap_tokenizer(root: Path) -> int:
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bpe.train_from_iterator(
        CAPTIONS, vocab_size=512, min_frequency=1, special_tokens=specials, show_progress=False
    )
    bpe.save_model(str(root))  # vocab.json + merges.txt
    bpe.post_processor = RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")),
        ("<s>", bpe.token_to_id("<s>")),
        trim_offsets=True,
        add_prefix_space=False,
    )
    bpe.save(str(root / "tokenizer.json"))
    special = {
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": {
            "content": "<mask>",
            "lstrip": True,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        },
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
    }
    _write_json(root / "special_tokens_map.json", special)
    _write_json(
        root / "tokenizer_config.json",
        special
        | {
            "tokenizer_class": "RobertaTokenizer",
            "model_max_length": 512,
            "add_prefix_space": False,
            "trim_offsets": True,
            "errors": "replace",
            "clean_up_tokenization_spaces": True,
            "processor_class": "ClapProcessor",
        },
    )
    return bpe.get_vocab_size()


def write_tiny_clap(root: Path, hidden: int = 32, *, seed: int = 0) -> Path:
    """Write a random whole-`ClapModel` repo shaped like `laion/larger_clap_music`; returns root.

    The text tower's `pooler_output` has `hidden` features. The audio tower is a tiny HTSAT that
    still accepts the real feature extractor's (1001 x 64) log-mel input.
    """
    from safetensors.torch import save_file
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = _write_clap_tokenizer(root)
    projection = 16
    config: dict[str, Any] = {
        "architectures": ["ClapModel"],
        "model_type": "clap",
        "projection_dim": projection,
        "projection_hidden_act": "relu",
        "logit_scale_init_value": 14.285714285714285,
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "clap_text_model",
            "vocab_size": vocab,
            "hidden_size": hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 4 * hidden,
            "max_position_embeddings": 514,
            "projection_dim": projection,
        },
        "audio_config": {
            "model_type": "clap_audio_model",
            # HTSAT keeps its 256 x 256 spectrogram grid; only widths and depths shrink.
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 1, 2, 2],
            "patch_embeds_hidden_size": 8,
            "hidden_size": 64,
            "projection_dim": projection,
        },
        "torch_dtype": "float32",
    }
    cfg = ClapConfig(
        text_config=config["text_config"],
        audio_config=config["audio_config"],
        projection_dim=projection,
        projection_hidden_act="relu",
    )
    model = _seeded_model(lambda: ClapModel(cfg), seed)
    save_file(_state_for_file(model), str(root / "model.safetensors"), metadata={"format": "pt"})
    _write_json(root / "config.json", config)
    ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=48_000,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        padding="repeatpad",
        truncation="rand_trunc",
        frequency_min=50,
        frequency_max=14_000,
    ).save_pretrained(root)
    prep = json.loads((root / "preprocessor_config.json").read_text(encoding="utf-8"))
    _write_json(root / "preprocessor_config.json", prep | {"processor_class": "ClapProcessor"})
    return root
