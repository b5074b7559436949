"""Locks that keep two runs out of one folder: the kernel's `flock` on small lock files.

A killed run never leaves a stale lock (the kernel drops it with the process), and the last
run out removes the lock file, so a folder keeps no litter. Where a lock cannot be taken (an
unwritable folder, which the caller reports itself; a file system without `flock`, such as
some network mounts; Windows) runs are not kept apart. `batch`, `vary` and `train` lock this
way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


class FileLocks:
    """The lock files this process holds; `release` lets go of all of them."""

    def __init__(self) -> None:
        self._fds: list[tuple[int, Path]] = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def take(self, path: Path, *, shared: bool = False) -> bool:
        """Lock `path` (created if needed), exclusively or `shared`; False when another process
        holds it in a conflicting way. True, holding nothing, where no lock can be taken."""
        try:
            import fcntl
        except ImportError:  # Windows
            return True
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        path = Path(path)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return True  # an unwritable folder is reported where it is written
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:
                os.close(fd)
                return True
            # The last run out removes the file; a lock on a removed file holds nothing.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fds.append((fd, path))
                return True
            os.close(fd)

    def release(self) -> None:
        """Unlock; the last run out removes the lock file."""
        try:
            import fcntl
        except ImportError:  # Windows: nothing was taken
            return
        while self._fds:
            fd, path = self._fds.pop()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only when no one else holds it
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.release()
