"""`--model tiny`: any command on tiny random weights, to try the tool without the 11 GB download.

The bundle (transformer, T5, CLAP, VAE and vocoder in their real on-disk layouts, plus
stand-ins for `eval`'s VGGish and PANNs CNN14; about 5 MB) is written once, on first use, into
the tool cache (`<cache>/tiny/<version>`), and `--model tiny` points every weight source at it.
It goes through the same loading and generation code as the real weights, so every command runs
end to end in seconds; what comes out is noise, and each command that uses it says so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fluxmusic_cli import __version__, atomic
from fluxmusic_cli.cli import config
from fluxmusic_cli.cli.console import warn
from fluxmusic_cli.engine import paths
from fluxmusic_cli.errors import OutputError, UsageError

if TYPE_CHECKING:
    from fluxmusic_cli.tinybundle.bundle import TinyBundle

NAME = "tiny"
NOISE = (
    "--model tiny runs tiny RANDOM weights: the audio is noise and any score is meaningless. "
    "It shows the tool working without the 11 GB download, not how FluxMusic sounds."
)
VGGISH = "vggish-tiny.pth"
CNN14 = "cnn14-tiny.pth"
_DONE = "RANDOM-WEIGHTS.txt"  # written last: a folder with it is whole
_OWN = ("t5", "clap", "vae_vocoder")


def folder() -> Path:
    """Where the bundle is kept (`fluxmusic cache rm tiny` removes it)."""
    return paths.cache_dir() / NAME / __version__


def bundle() -> TinyBundle:
    """The tiny bundle in the tool cache, written first when it is not there (about a second).
    A cache that cannot be written is said once; the bundle then lives in a temporary folder
    for this run."""
    from fluxmusic_cli.tinybundle.bundle import TinyBundle

    final = folder()
    if (final / _DONE).is_file():
        return TinyBundle.at(final)
    try:
        return _build(final)
    except (OSError, OutputError) as exc:
        reason = exc.message if isinstance(exc, OutputError) else exc.strerror or str(exc)
        warn(
            f"The tool cache cannot hold the tiny bundle ({reason}); it is written to a "
            "temporary folder for this run."
        )
        temp = Path(tempfile.mkdtemp(prefix="fluxmusic-tiny-"))
        atexit.register(shutil.rmtree, temp, ignore_errors=True)
        try:
            return _write(temp / "bundle")
        except OSError as again:
            raise atomic.os_error(again, temp, "write the tiny bundle to") from None


def _build(final: Path) -> TinyBundle:
    """Write the bundle beside `final` under a temporary name and rename it into place, so a
    killed run leaves no half bundle and two runs at once both end with a whole one."""
    from fluxmusic_cli.tinybundle.bundle import TinyBundle

    atomic.make_folder(final.parent)
    atomic.clean_leftovers(final.parent, [final.name])
    temp = atomic.temp_path(final)
    try:
        _write(temp)
        if final.exists() and not (final / _DONE).is_file():
            shutil.rmtree(final)  # what is left of a bundle removed by hand
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / _DONE).is_file():  # not another run that finished first
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return TinyBundle.at(final)


def _write(root: Path) -> TinyBundle:
    from fluxmusic_cli.tinybundle.bundle import build_tiny_bundle
    from fluxmusic_cli.tinybundle.eval_models import write_tiny_cnn14, write_tiny_vggish

    made = build_tiny_bundle(root)
    write_tiny_vggish(root / VGGISH)
    write_tiny_cnn14(root / CNN14)
    (root / _DONE).write_text(
        f"Tiny random weights written by fluxmusic {__version__} for `--model tiny`.\n"
        "What they make is noise. Remove them with `fluxmusic cache rm tiny`.\n",
        encoding="utf-8",
    )
    return made


def _named_by(defaults: Mapping[str, config.Resolved]) -> str:
    """How the message names the choice of tiny: the flag, or where its default came from."""
    found = defaults["model"]
    return f"model tiny (from {found.described})" if found.value == NAME else "--model tiny"


def engine_sources(given: Mapping[str, str]) -> dict[str, str]:
    """The four weight sources of `--model tiny` (config keys: model, t5, clap, vae_vocoder).
    A T5, CLAP or VAE set by a flag is refused: only the bundle's own fit its tiny transformer;
    one set by the environment or the config file gives way."""
    defaults = config.resolve_all()
    own = [config.SOURCES[k].flag for k in _OWN if given[k] != defaults[k].value]
    if own:
        raise UsageError(
            f"{_named_by(defaults)} brings its own T5, CLAP and VAE (random weights that fit its "
            f"tiny transformer); leave out {' and '.join(own)}."
        )
    found = bundle_sources()
    warn(NOISE)
    return found


def bundle_sources() -> dict[str, str]:
    """The bundle's four components, by config key (model, t5, clap, vae_vocoder)."""
    made = bundle()
    return {
        "model": str(made.model),
        "t5": str(made.t5),
        "clap": str(made.clap),
        "vae_vocoder": str(made.audioldm2),
    }


def eval_sources(
    model: str | None, vggish: Path | None, panns: Path | None, clap: str
) -> tuple[Path | None, Path | None, str]:
    """`eval`'s VGGish weights, PANNs weights and CLAP: as given, or with `--model tiny` (or a
    default model of tiny) the bundle's random stand-ins. Weights named beside tiny are
    refused."""
    defaults = config.resolve_all()
    if model is None:
        if defaults["model"].value != NAME:
            return vggish, panns, clap
    elif model != NAME:
        raise UsageError(
            f"eval --model takes only tiny (random stand-ins, no download), not {model!r}; "
            "the published models are its default, and --vggish-weights, --panns-weights and "
            "--clap name others."
        )
    named = (("--vggish-weights", vggish), ("--panns-weights", panns))
    given = [flag for flag, value in named if value is not None]
    if clap != defaults["clap"].value:
        given.append("--clap")
    if given:
        raise UsageError(
            f"{_named_by(defaults)} brings its own evaluation models; leave out "
            f"{' and '.join(given)}."
        )
    made = bundle()
    warn(NOISE)
    return made.root / VGGISH, made.root / CNN14, str(made.clap)
