"""The first-use download question, asked of a real pseudo-terminal by the installed script."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest
from fakehub import serve_tiny_bundle, start_fake_hub
from installed import FLUXMUSIC, needs_script

from fluxmusic_cli.engine import registry

pytestmark = [pytest.mark.e2e, needs_script]

FAST = ["--steps", "2", "--duration", "0.48", "--device", "cpu", "--dtype", "fp32"]


def _read(fd: int, until: bytes | None, seconds: float) -> bytes:
    """What the terminal shows within `seconds` (stopping early once `until` appears)."""
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the other end closed: the process ended
            break
        if not chunk:
            break
        out += chunk
        if until is not None and until in out:
            break
    return out


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_the_download_question_stays_visible_defaults_to_no_and_no_exits_0(
    command, tiny_bundle, monkeypatch, tmp_path
):
    small = registry.get_variant("small")
    hub = serve_tiny_bundle(
        start_fake_hub(monkeypatch), tiny_bundle, advertised={small.filename: 11 * 10**9}
    )
    (tmp_path / "cues.txt").write_text("cello\n")
    args = ["cello", "-o", "a.wav"] if command == "generate" else ["cues.txt", "-o", "out"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(FLUXMUSIC), command, *args, *FAST], cwd=tmp_path, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)  # fmt: skip
    os.close(slave)
    try:
        shown = _read(master, b"[y/n]", 180)
        assert b"[y/n]" in shown, shown.decode(errors="replace")
        question = shown.decode(errors="replace").rsplit("Download", 1)[-1]
        assert "(n)" in question  # the default is no
        # Nothing redraws over the question while it waits for an answer.
        assert _read(master, None, 1.5) == b""
        os.write(master, b"\r")  # a stray Enter
        rest = _read(master, None, 60).decode(errors="replace")
        assert proc.wait(timeout=60) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert "Nothing was downloaded" in rest
    assert not [r for r in hub.requests if r.method == "GET" and small.filename in r.path]
    hub.stop()
