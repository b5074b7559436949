"""`fluxmusic serve`: the models loaded once, behind an HTTP API with a job queue."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fluxmusic_cli.cli import options as opt
from fluxmusic_cli.cli.numbers import number_option
from fluxmusic_cli.cli.option_group import Shared, shared_options

SERVER = "Server"
MIB = 1024 * 1024

HELP = """Serve the models over HTTP: load them once, keep them warm, run jobs from a queue.

Jobs are clips of generate, remix, repaint, extend and loop, sent as JSON to /v1/jobs with the \
command's own options; they survive restarts (even kill -9) in --data-dir. The first line on \
stdout says where the server listens; the token is in DATA_DIR/server.json.

[bold]Examples[/bold]

  fluxmusic serve

  fluxmusic serve --model base --keep-alive 5m --port 0

  fluxmusic serve --host 0.0.0.0 --allowed-host studio.local
"""

# --token is the API's here, so the Hugging Face token of the engine group moves.
HfToken = Annotated[
    str | None,
    typer.Option(
        "--hf-token",
        envvar="HF_TOKEN",
        help="Hugging Face token for gated repos (default: $HF_TOKEN).",
        rich_help_panel=opt.MODELS,
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve)


@shared_options("engine", token=(HfToken, None))
def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Beyond loopback (e.g. 0.0.0.0) anyone on the network "
            "who has the token can use the API.",
            rich_help_panel=SERVER,
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        number_option(
            "--port",
            whole=True,
            minimum=0,
            maximum=65535,
            metavar="PORT",
            help="Port; 0 picks a free one.",
            rich_help_panel=SERVER,
        ),
    ] = 8677,
    api_token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLUXMUSIC_TOKEN",
            help="The API's bearer token (default: generated on first start and kept in "
            "DATA_DIR/server.json).",
            rich_help_panel=SERVER,
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Job store, uploads and outputs (default: the user data folder of fluxmusic, "
            "server/).",
            rich_help_panel=SERVER,
            show_default=False,
        ),
    ] = None,
    max_queue: Annotated[
        int,
        number_option(
            "--max-queue",
            whole=True,
            minimum=0,
            maximum=100_000,
            metavar="N",
            help="Jobs that may wait behind the running one; one more is refused (429, with "
            "Retry-After).",
            rich_help_panel=SERVER,
        ),
    ] = 16,
    max_upload_mb: Annotated[
        int,
        number_option(
            "--max-upload-mb",
            whole=True,
            minimum=1,
            maximum=100_000,
            metavar="MIB",
            help="Largest upload, MiB.",
            rich_help_panel=SERVER,
        ),
    ] = 100,
    keep_alive: Annotated[
        str,
        typer.Option(
            "--keep-alive",
            metavar="DURATION",
            help="How long idle models stay loaded (30s, 5m, 1h); 0 releases them as soon as "
            "the queue is empty, -1 never.",
            rich_help_panel=SERVER,
        ),
    ] = "30m",
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A name clients reach the server by, besides the bound address, localhost and "
            "127.0.0.1 (repeatable); other Host headers are refused (421).",
            rich_help_panel=SERVER,
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="A web origin whose pages may call the API (repeatable; never *). Without it "
            "no CORS headers are sent.",
            rich_help_panel=SERVER,
            show_default=False,
        ),
    ] = None,
    max_batch: Annotated[
        int,
        number_option(
            "--max-batch",
            whole=True,
            minimum=1,
            maximum=256,
            metavar="N",
            help="Queued generate jobs with the same settings share a forward pass, up to N. 1 "
            "keeps every job's samples equal to the command line's; more is faster on GPUs.",
            rich_help_panel=SERVER,
        ),
    ] = 1,
    *,
    shared: Shared,
) -> None:
    from fluxmusic_cli.cli.console import info, warn
    from fluxmusic_cli.server import config as cfg

    config = cfg.ServerConfig(
        host=host,
        port=port,
        data_dir=data_dir if data_dir is not None else cfg.default_data_dir(),
        token=cfg.check_token(api_token),
        max_queue=max_queue,
        max_upload_bytes=max_upload_mb * MIB,
        keep_alive=cfg.parse_duration(keep_alive),
        allowed_hosts=tuple(cfg.check_host_name(h) for h in allowed_host or ()),
        cors_origins=tuple(cfg.check_origin(o) for o in cors_origin or ()),
        max_batch=max_batch,
    )
    # The engine options, fixed for the server's life (--max-batch jobs share a forward pass).
    engine_options = shared.engine.engine_options(forward_batch=max_batch)
    engine_options.check()

    def check_downloads(engine) -> None:
        from fluxmusic_cli.cli.downloads import ensure_downloaded

        ensure_downloaded(
            engine.required_refs(), token=engine_options.token, yes=shared.engine.yes, quiet=False
        )

    from fluxmusic_cli.server.main import run_server

    run_server(
        config, engine_options, check_downloads=check_downloads, say=_say, log=info, warn=warn
    )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
