"""Files that appear whole or not at all, and the cleaning of what a killed writer left.

Every file the tool writes (audio, records, manifests' neighbours, cache entries, converted
checkpoints, figures) goes through here. A file is written under a hidden temporary name in
its own folder, flushed to disk and renamed over its final name; the temporary file is
removed on any error or Ctrl-C. The temporary name carries its writer's process id and host:

    .<final name>.<pid>-<host>-<token>.tmp

so a later run removes a temporary file only when the process that owns it is gone, and two
runs on one folder never delete each other's files in flight. `write_together` writes
several files (an audio file and its record) so that a full disk leaves both or neither;
`creating` never replaces: it fails when the final name appeared while the file was written.
`writing_folder` writes a folder of files (a training checkpoint) whole or not at all.

OS errors become one sentence (`OutputError`): a full disk says how much space is left, also
when the writer is a library that turns the OS error into its own (`torch.save`'s "unexpected
pos"), as long as it writes through `writing_stream`. Every file gets the mode a plain
`open()` would give it under the umask, whatever its writer chose (safetensors writes 0600).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from fluxmusic_cli.errors import OutputError

# A temporary file from another host cannot be checked; it counts as a leftover this old.
FOREIGN_STALE_S = 24 * 3600
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]*)-[0-9a-f]{8}\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def temp_path(final: Path) -> Path:
    """A fresh temporary name for `final`, in its folder, owned by this process."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}-{_host()}-{secrets.token_hex(4)}.tmp")


def temp_target(name: str) -> str | None:
    """The final name a temporary file name stands for, or None when it is not one of ours."""
    match = _TEMP.match(name)
    return match["target"] if match else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    except OSError:
        return True
    return True


def is_leftover(path: Path) -> bool:
    """Whether `path` is a temporary file whose writer is gone (so it is safe to delete)."""
    match = _TEMP.match(Path(path).name)
    if match is None:
        return False
    if match["host"] == _host():
        return not _pid_alive(int(match["pid"]))
    try:
        return time.time() - Path(path).stat().st_mtime > FOREIGN_STALE_S
    except OSError:
        return False


def clean_leftovers(folder: Path, targets: Iterable[str] | None = None) -> list[Path]:
    """Delete temporary files (or folders) in `folder` whose writer is gone (only those standing for
    `targets`, when given); returns what was deleted. An unreadable folder deletes nothing."""
    wanted = None if targets is None else set(targets)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        target = temp_target(entry.name)
        if target is None or (wanted is not None and target not in wanted):
            continue
        if is_leftover(Path(entry.path)):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # a folder written whole (a checkpoint)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def free_bytes(path: Path) -> int | None:
    """Free space on the file system holding `path` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def os_error(exc: OSError, path: Path, doing: str = "write") -> OutputError:
    """One sentence for an OS error met while writing `path`."""
    path = Path(path)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        free = free_bytes(path.parent)
        room = "" if free is None else f" ({free / 1e6:.0f} MB free on {path.parent})"
        return OutputError(
            f"Cannot {doing} {path}: no space left on device{room}; nothing was left half-written.",
            hint="Free some space or choose another folder, then run the same command again.",
        )
    if exc.errno == errno.EROFS:
        return OutputError(f"Cannot {doing} {path}: the file system is read-only.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OutputError(f"Cannot {doing} {path}: permission denied.")
    return OutputError(f"Cannot {doing} {path}: {exc.strerror or exc}.")


@contextlib.contextmanager
def writing(final: Path, *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is flushed and renamed to `final`.

    On any error or Ctrl-C the temporary file is removed and `final` is untouched; an OS
    error comes out as an `OutputError` sentence. A `private` file (a secret) is readable by
    its owner alone (0600); every other file gets the umask's mode.
    """
    with _published(final, os.replace, private=private) as tmp:
        yield tmp


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class _Stream(io.RawIOBase):
    """A binary file for `writing_stream`: every write goes whole to the OS (`os.write`), and
    the first OS error is kept, whatever the caller's library makes of it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _CLOEXEC, 0o666)
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as exc:
            self.error = self.error or exc
            raise
        return done

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


@contextlib.contextmanager
def writing_stream(final: Path) -> Iterator[BinaryIO]:
    """As `writing`, but yields an open binary file to write into (`torch.save(obj, f)`,
    `f.write(data)`). An OS error met while writing (a full disk) comes out as its sentence
    even where the library that wrote turned it into an exception of its own."""
    with writing(final) as tmp:
        stream = _Stream(tmp)
        try:
            yield stream
        except Exception:
            if stream.error is not None:
                raise stream.error from None
            raise
        finally:
            stream.close()
        if stream.error is not None:  # a writer that went on after a failed write
            raise stream.error


@contextlib.contextmanager
def writing_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; when the block succeeds it is renamed to `final` (a
    folder of that name is removed first), so `final` never holds part of what was written.
    On any error or Ctrl-C the temporary folder is removed; an OS error is one sentence."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise os_error(exc, final) from None
    except OutputError as exc:  # a file inside: named as it would have been
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(exc.message.replace(str(tmp), str(final)), hint=exc.hint) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(final: Path, data: bytes) -> Path:
    """Write `data` to `final` atomically."""
    with writing_stream(final) as stream:
        stream.write(data)
    return Path(final)


def write_text(final: Path, text: str) -> Path:
    return write_bytes(final, text.encode("utf-8"))


@contextlib.contextmanager
def creating(final: Path) -> Iterator[Path]:
    """As `writing`, but `final` is only ever created, never replaced: when a file of that name
    exists by the time the temporary file is whole, `FileExistsError` is raised and nothing
    changes (the temporary file is removed)."""
    with _published(final, _create) as tmp:
        yield tmp


@contextlib.contextmanager
def _published(final: Path, publish, *, private: bool = False) -> Iterator[Path]:
    """A temporary path to write; once whole it is flushed and `publish(tmp, final)` gives it
    its name. On any error the temporary file goes: a FileExistsError from `publish` as it is,
    another OS error as an `OutputError` sentence."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        yield tmp
        _set_mode(tmp, private=private)
        _sync(tmp)
        publish(tmp, final)
    except FileExistsError:
        _discard(tmp)
        raise
    except OSError as exc:
        _discard(tmp)
        raise os_error(exc, final) from None
    except BaseException:
        _discard(tmp)
        raise


def write_new(final: Path, data: bytes) -> Path:
    """Write `data` to `final` atomically; `FileExistsError` when `final` exists."""
    with creating(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


# A hard link fails on an existing name in one step; file systems without hard links (FAT,
# some network and FUSE mounts) answer one of these, and the name is then checked just before
# the rename instead.
_NO_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
)


def _create(tmp: Path, final: Path) -> None:
    """Give the whole file `tmp` the name `final` unless that name exists."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.replace(tmp, final)
        return
    _discard(tmp)


def write_together(files: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """Write several files so that either all of them appear or none does.

    Every file is written and flushed under its temporary name first, so a full disk or
    Ctrl-C leaves nothing; the renames that follow need no space. They go in the order given,
    so list the record before the audio it describes: a killed process then never leaves an
    audio file without its record.
    """
    temps: list[tuple[Path, Path]] = []
    renamed: list[Path] = []
    current = Path(files[0][0]) if files else Path(".")
    try:
        for final, data in files:
            current = Path(final)
            tmp = temp_path(current)
            temps.append((tmp, current))
            tmp.write_bytes(data)
            _sync(tmp)
        for tmp, final in temps:
            current = final
            os.replace(tmp, final)
            renamed.append(final)
    except OSError as exc:
        _undo(temps, renamed)
        raise os_error(exc, current) from None
    except BaseException:
        _undo(temps, renamed)
        raise
    return [final for _, final in temps]


def _undo(temps: list[tuple[Path, Path]], renamed: list[Path]) -> None:
    for tmp, _ in temps:
        _discard(tmp)
    for final in renamed:
        _discard(final)


def make_folder(folder: Path) -> Path:
    """Create `folder` (and its parents) if needed; an OS error is one sentence."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} exists and is not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, folder, "create the folder") from None
    return folder


def writable_folder(folder: Path) -> Path:
    """`make_folder`, then refuse a folder this process may not write in: what a command that
    fills a folder (`batch`, `vary`, `train`) checks before any work."""
    folder = make_folder(folder)
    if not os.access(folder, os.W_OK):
        raise OutputError(f"Folder {folder} is not writable.")
    return folder


def _umask() -> int:
    """The process's umask (read where Linux shows it; else set and put back at once)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _set_mode(path: Path, *, private: bool = False) -> None:
    """Give a written file the mode `open()` gives a new file, as every output has (whatever
    its writer chose: safetensors writes 0600), or 0600 for a private one."""
    if Path(path).is_file():
        os.chmod(path, 0o600 if private else 0o666 & ~_umask())


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
