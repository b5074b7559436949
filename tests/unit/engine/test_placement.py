"""Where the text encoders run and which setups fit, with device memory injected: the pure
decision from the parameter table, the store acting on it, and the MPS dtype fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxmusic_cli.engine import devices, placement, preflight, registry
from fluxmusic_cli.engine.requests import EngineOptions
from fluxmusic_cli.engine.store import ModelStore
from fluxmusic_cli.errors import UsageError

GB = 10**9
MEMORIES = (4, 8, 16, 24, 80)


def need(variant: str, dtype: str = "bf16", encoders: str = "both") -> dict[str, int]:
    return placement.component_bytes(registry.VARIANTS[variant].params, dtype, encoders)


def test_component_bytes_come_from_the_parameter_table():
    small = need("small")
    assert small["t5"] == registry.PARAMS_BY_KIND["t5"] * devices.BYTES_PER_PARAM["bf16"]
    assert small["transformer"] == registry.VARIANTS["small"].params * 2
    assert small["total"] == sum(v for k, v in small.items() if k != "total")
    # fp16 runs T5 in bf16 (it overflows in fp16): same bytes per parameter.
    assert need("small", "fp16")["t5"] == small["t5"]
    assert need("small", "fp32")["t5"] == 2 * small["t5"]
    assert need("small", encoders="clap")["t5"] == 0


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        # small bf16: T5 + CLAP 10.0 GB, transformer + decoder 0.7 GB.
        ("small", ["text on cpu", "text on cpu", "resident", "resident", "resident"]),
        # giant bf16: transformer + decoder 4.7 GB, 14.7 GB in all.
        ("giant", ["does not fit", "text on cpu", "sequential", "resident", "resident"]),
    ],
)
def test_setups_that_fit_4_8_16_24_and_80_gb(variant, expected):
    assert [placement.setup_for(gb * GB, need(variant)) for gb in MEMORIES] == expected


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("small", ["cpu", "cpu", "cuda", "cuda", "cuda"]),
        ("giant", ["cpu", "cpu", "cuda", "cuda", "cuda"]),
    ],
)
def test_auto_encodes_on_the_cpu_when_t5_does_not_fit_the_gpu(variant, expected):
    chosen = [
        placement.choose_text_device("auto", "cuda", gb * GB, need(variant)).device
        for gb in MEMORIES
    ]
    assert chosen == expected


def test_clap_alone_fits_a_4_gb_gpu():
    chosen = placement.choose_text_device("auto", "cuda", 4 * GB, need("small", encoders="clap"))
    assert chosen.device == "cuda"


def test_explicit_choices_and_refusals():
    small = need("small")
    assert placement.choose_text_device("cpu", "cuda", 80 * GB, small).device == "cpu"
    assert placement.choose_text_device("cuda", "cuda", 4 * GB, small).device == "cuda"
    assert placement.choose_text_device("auto", "cpu", None, small).device == "cpu"
    # A Mac's CPU shares the GPU's memory: moving T5 there would free nothing.
    assert placement.choose_text_device("auto", "mps", 16 * GB, small).device == "mps"
    with pytest.raises(UsageError, match="needs the model on mps"):
        placement.choose_text_device("mps", "cuda", 80 * GB, small)
    with pytest.raises(UsageError, match="needs --device cuda"):
        placement.choose_text_device("cuda", "cpu", None, small)
    with pytest.raises(UsageError, match="Unknown text device"):
        placement.choose_text_device("tpu", "cuda", 80 * GB, small)


def test_the_readme_fit_table_is_what_placement_decides():
    # The README's table of setups per variant and GPU memory (bf16), row by row.
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 + len(MEMORIES) and cells[0] in registry.VARIANTS:
            rows[cells[0]] = cells[3:]
    assert sorted(rows) == sorted(registry.VARIANTS)
    for name, shown in rows.items():
        decided = [placement.setup_for(int(gb * GB), need(name)) for gb in MEMORIES]
        assert shown == decided, name
    assert rows["small"][1] == "text on cpu" and rows["giant"][3] == "resident"


@pytest.mark.parametrize(
    ("variant", "gb", "text", "policy"),
    [("small", 8, "cpu", "resident"), ("giant", 16, "cuda", "sequential"),
     ("giant", 80, "cuda", "resident")],
)  # fmt: skip
def test_the_store_places_the_encoders_and_sizes_the_policy_by_what_stays_on_the_gpu(
    monkeypatch, variant, gb, text, policy
):
    store = ModelStore(EngineOptions(model=variant, dtype="bf16"))
    store._placement = devices.Placement("cuda", "bf16", "injected")
    monkeypatch.setattr(devices, "available_memory_bytes", lambda device: gb * GB)
    assert store.text_placement.device == text
    # On an 8 GB GPU, with T5 on the CPU, the small model's 0.7 GB stays resident there.
    assert store.memory_policy() == policy


@pytest.mark.parametrize("dtype", sorted(devices.BYTES_PER_PARAM))
@pytest.mark.parametrize("variant", sorted(registry.VARIANTS))
def test_the_pre_flight_line_prices_the_weights_as_the_store_decides_with_them(
    monkeypatch, variant, dtype
):
    injected = devices.Placement("cuda", dtype, "injected")
    monkeypatch.setattr(devices, "resolve_placement", lambda device, dtype: injected)
    store = ModelStore(EngineOptions(model=variant, dtype=dtype))
    plan = preflight.plan_download(store.refs.values(), offline=True)
    assert plan.memory_bytes(dtype) == store.estimate_memory_bytes()["total"]


def test_local_sources_are_priced_alike_by_the_pre_flight_line_and_the_store(tiny_bundle):
    store = ModelStore(tiny_bundle.engine_options(dtype="fp32", device="cpu"))
    plan = preflight.plan_download(store.refs.values(), offline=True)
    assert plan.memory_bytes("fp32") == store.estimate_memory_bytes()["total"]
    # Counted from the tiny files themselves, not the registry's real sizes.
    assert plan.memory_bytes("fp32") < 10**8


@pytest.mark.parametrize("dtype", sorted(devices.BYTES_PER_PARAM))
def test_each_part_is_priced_in_the_dtype_the_store_loads_it_in(tiny_bundle, encoder_work, dtype):
    store = ModelStore(tiny_bundle.engine_options(dtype=dtype, device="cpu", prompt_cache=False))
    store.conditioner().encode(["a low drone"])
    decoder, transformer = store.decoder(), store.transformer()
    t5, clap = encoder_work.models["t5"], encoder_work.models["clap"]

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    def held(*models) -> int:
        return sum(p.numel() * p.element_size() for m in models for p in m.parameters())

    counts = {"t5": count(t5), "clap": count(clap)}
    counts.update(vae=count(decoder.vae), vocoder=count(decoder.vocoder))
    priced = placement.component_bytes(count(transformer), dtype, params=counts)
    assert priced["transformer"] == held(transformer)
    assert (priced["t5"], priced["clap"]) == (held(t5), held(clap))
    assert priced["decoder"] == held(decoder.vae, decoder.vocoder)
