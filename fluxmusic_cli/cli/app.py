"""The root `fluxmusic` app: registers one module per command and maps errors to exit codes.

Importing this module must stay cheap (no torch), so `fluxmusic --help` is instant.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from fluxmusic_cli import __version__
from fluxmusic_cli.errors import FluxMusicError

app = typer.Typer(
    name="fluxmusic",
    help=(
        "Text to music with FluxMusic, on a GPU, a Mac or a plain CPU.\n\n"
        'Example: fluxmusic generate "warm lo-fi piano, vinyl crackle" -o piano.mp3'
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module defines `register(app)`; the list is the single place commands are added.
COMMAND_MODULES: tuple[str, ...] = (
    "generate",
    "remix",
    "repaint",
    "extend",
    "loop",
    "batch",
    "vary",
    "eval",
    "models",
    "doctor",
    "train",
    "serve",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fluxmusic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks (also FLUXMUSIC_DEBUG=1)."
    ),
) -> None:
    if debug:
        os.environ["FLUXMUSIC_DEBUG"] = "1"


importlib.import_module("fluxmusic_cli.cli.helpstyle").apply()

for _name in COMMAND_MODULES:
    importlib.import_module(f"fluxmusic_cli.cli.{_name}").register(app)


def _debug() -> bool:
    return os.environ.get("FLUXMUSIC_DEBUG", "") not in ("", "0") or "--debug" in sys.argv


def main() -> None:
    """Console-script entry point: run the app, turning known errors into sentences."""
    from fluxmusic_cli import notices
    from fluxmusic_cli.cli.console import err, printable, warn
    from fluxmusic_cli.engine.quiet import quiet_by_default

    notices.set_sink(warn)
    quiet_by_default()
    try:
        # Without standalone mode, typer returns (not raises) the code of an Exit, and turns
        # Ctrl-C into code 130.
        code = app(standalone_mode=False)
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except FluxMusicError as exc:
        if _debug():
            err.print_exception()
        err.print(f"[red]error:[/red] {printable(exc.message)}", soft_wrap=True, markup=True)
        if exc.hint:
            err.print(printable(exc.hint), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]interrupted:[/red] stopped by Ctrl-C; no partial file was left.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence is the message
        # Click's usage errors (typer >= 0.24 vendors click, so match by shape, not class).
        if callable(getattr(exc, "show", None)) and isinstance(
            getattr(exc, "exit_code", None), int
        ):
            import io

            shown = io.StringIO()
            exc.show(file=shown)
            sys.stderr.write(printable(shown.getvalue()))
            sys.exit(exc.exit_code)
        if _debug():
            raise
        err.print(f"[red]unexpected error:[/red] {type(exc).__name__}: {exc}")
        err.print("Run again with --debug for the traceback, and report it if it persists.")
        sys.exit(1)
