"""Listening: the socket is bound by us (so `--port 0`'s real port is known before anything
is printed), and uvicorn serves the app on it until SIGTERM or Ctrl-C.

uvicorn handles both signals while it serves (it stops accepting, lets responses finish) and
raises them again once it has stopped; `serve` tells the service first (no new jobs, the
running one stops at its next step, event streams end), and our own handlers take the raised
signal afterwards, so a stop is an exit 0.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

from fluxmusic_cli.errors import UsageError

GRACE_S = 10  # seconds open responses get to finish once the server stops


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); refused with one sentence."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"Cannot listen on {host}: {exc.strerror or exc}.") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(0 picks a free one)."
        ) from None
    sock.set_inheritable(False)
    return sock


def run(app, sock: socket.socket, on_stop: Callable[[], None]) -> None:
    """Serve `app` on `sock` until a stop signal; `on_stop()` is called from the signal
    handler (so it may only set flags)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            on_stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACE_S,
    )
    server = Server(config)
    # Ours before and after uvicorn's own: a signal it raises again once stopped lands here.
    saved = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
