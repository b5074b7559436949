"""Shared fixtures: every test runs with its own cache and config directories and no network."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Point every cache the tool or huggingface_hub could touch at a fresh temporary folder, and
    fix what changes how output looks (colour, terminal width) so every machine sees the same."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("FLUXMUSIC_CACHE", str(root / "fluxmusic-cache"))
    monkeypatch.setenv("HF_HOME", str(root / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "config"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # Defaults a developer may have set (weight sources, debug output) must not reach a test.
    for name in ("DEBUG", "MODEL", "T5", "CLAP", "VAE_VOCODER"):
        monkeypatch.delenv(f"FLUXMUSIC_{name}", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    yield root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """Tiny random-weight T5, CLAP, VAE, vocoder and FluxMusic files in the hub layouts."""
    from fluxmusic_cli.tinybundle.bundle import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the console entry point in-process, as a user would: (exit code, stdout, stderr)."""
    import io
    import sys

    from fluxmusic_cli.cli.app import main

    def _run(args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["fluxmusic", *args])
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@pytest.fixture
def load_counts(monkeypatch):
    """How often the flow model and the decoder were loaded, counted around the real loaders."""
    from fluxmusic_cli.engine import checkpoint, decode

    counts = {"transformer": 0, "decoder": 0}

    def counted(kind, real):
        def load(*args, **kwargs):
            counts[kind] += 1
            return real(*args, **kwargs)

        return load

    monkeypatch.setattr(
        checkpoint, "load_transformer", counted("transformer", checkpoint.load_transformer)
    )
    monkeypatch.setattr(decode, "load_decoder", counted("decoder", decode.load_decoder))
    return counts


class EncoderWork:
    """What the text encoders did, per encoder: weights loaded, forward passes, prompts, and the
    last model each load returned."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loads = {"t5": 0, "clap": 0}
        self.models: dict[str, object] = {}
        self.forward_calls = {"t5": 0, "clap": 0}
        self.prompts_encoded = {"t5": 0, "clap": 0}


@pytest.fixture
def encoder_work(monkeypatch):
    """Counts around the conditioner's real loaders and tokenisers (one tokenising per forward
    pass), so the production objects carry no counters of their own."""
    from fluxmusic_cli.engine import conditioning

    work = EncoderWork()
    loaders, inputs = dict(conditioning._LOADERS), dict(conditioning._INPUTS)

    def loader(kind):
        def load(*args, **kwargs):
            work.loads[kind] += 1
            tokenizer, work.models[kind] = loaders[kind](*args, **kwargs)
            return tokenizer, work.models[kind]

        return load

    def tokeniser(kind):
        def tokenise(prompts, *args, **kwargs):
            work.forward_calls[kind] += 1
            work.prompts_encoded[kind] += len(prompts)
            return inputs[kind](prompts, *args, **kwargs)

        return tokenise

    monkeypatch.setattr(conditioning, "_LOADERS", {k: loader(k) for k in loaders})
    monkeypatch.setattr(conditioning, "_INPUTS", {k: tokeniser(k) for k in inputs})
    return work
