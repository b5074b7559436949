"""Where the text encoders run, and which setups fit a device's memory: pure functions over
parameter counts (`registry.PARAMS_BY_KIND`, the variants' `params`) and
`devices.BYTES_PER_PARAM`, so they are tested with any memory size injected.

T5-XXL alone is 9.5 GB in bf16, more than the transformer of every released variant but
giant; on a GPU that cannot hold it, the prompts are encoded on the CPU and only their
embeddings (a few MB) move to the accelerator, while the transformer and decoder stay there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fluxmusic_cli.engine import devices
from fluxmusic_cli.engine.devices import encoder_dtype
from fluxmusic_cli.errors import UsageError

TEXT_DEVICES = ("auto", "cpu", "cuda", "mps")
# Share of a device's memory the weights may take; the rest is activations and the allocator.
HEADROOM = 0.8
GB = 1e9


def component_bytes(
    transformer_params: int,
    dtype: str,
    encoders: str = "both",
    *,
    params: Mapping[str, int] | None = None,
    bf16_ok: bool = True,
) -> dict[str, int]:
    """Weights memory per component in a run of `dtype`, priced as the store loads them: the
    one formula behind the pre-flight line, the store's memory policy, `doctor` and the README.

    The transformer and the vocoder are held in the run's dtype, T5 and CLAP in
    `encoder_dtype` (one conditioner dtype for both), and the VAE in fp32: AudioLDM 2's config
    sets `force_upcast` (its decoder overflows in fp16), which `decode.load_decoder` obeys.
    `params` gives the parameter counts of "t5", "clap", "vae" and "vocoder" (0 for a part that
    is not there); a part it leaves out has its released size from the registry.
    """
    from fluxmusic_cli.engine import registry

    counts = {
        "t5": registry.PARAMS_BY_KIND["t5"],
        "clap": registry.PARAMS_BY_KIND["clap"],
        **registry.DECODER_PARAMS,
        **(params or {}),
    }
    text = encoder_dtype(dtype, bf16_ok)
    held = {"t5": text, "clap": text, "vae": "fp32", "vocoder": dtype}
    price = {part: counts[part] * devices.BYTES_PER_PARAM[held[part]] for part in held}
    out = {
        "transformer": transformer_params * devices.BYTES_PER_PARAM[dtype],
        "t5": 0 if encoders == "clap" else price["t5"],
        "clap": 0 if encoders == "t5" else price["clap"],
        "decoder": price["vae"] + price["vocoder"],
    }
    out["total"] = sum(out.values())
    return out


@dataclass(frozen=True)
class TextPlacement:
    device: str  # where T5 and CLAP run
    reason: str


def choose_text_device(
    requested: str, device: str, memory_bytes: int | None, need: dict[str, int]
) -> TextPlacement:
    """Where the text encoders run, given the model's `device`, the memory it offers and the
    components' weights `need` (bytes, as `component_bytes` or the store's estimate give).

    auto: on the model's device when the encoders fit there by themselves (the memory policy
    then decides whether they stay loaded beside the transformer), else on the CPU; always on
    MPS, whose memory the CPU shares.
    """
    if requested not in TEXT_DEVICES:
        raise UsageError(
            f"Unknown text device {requested!r}; choose one of {', '.join(TEXT_DEVICES)}."
        )
    if requested == "cpu" or device == "cpu":
        if requested not in ("auto", "cpu"):
            raise UsageError(f"--text-device {requested} needs --device {requested}.")
        return TextPlacement(
            "cpu", "as requested" if requested == "cpu" else "the model runs on cpu"
        )
    if requested != "auto":
        if requested != device:
            raise UsageError(
                f"--text-device {requested} needs the model on {requested} too (it is on "
                f"{device}); use --text-device cpu or auto."
            )
        return TextPlacement(device, "as requested")
    if device == "mps":  # unified memory: the CPU would hold the same bytes
        return TextPlacement("mps", "a Mac's memory is shared by its CPU and GPU")
    text = need["t5"] + need["clap"]
    if memory_bytes is None or text <= HEADROOM * memory_bytes:
        return TextPlacement(device, f"the text encoders fit on {device}")
    return TextPlacement(
        "cpu",
        f"the text encoders ({text / GB:.1f} GB) do not fit in {memory_bytes / GB:.0f} GB of "
        f"{device} memory; prompts are encoded on the CPU and only their embeddings move",
    )


def setup_for(memory_bytes: int, need: dict[str, int]) -> str:
    """Which setup an accelerator of `memory_bytes` can run: `resident` (everything stays
    loaded), `sequential` (text encoders, then transformer and decoder), `text on cpu`, or
    `does not fit` (the transformer and decoder alone are too big)."""
    budget = HEADROOM * memory_bytes
    text = need["t5"] + need["clap"]
    model = need["transformer"] + need["decoder"]
    if text + model <= budget:
        return "resident"
    if max(text, model) <= budget:
        return "sequential"
    if model <= budget:
        return "text on cpu"
    return "does not fit"
