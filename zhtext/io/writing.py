"""Writing outputs so that they appear whole or not at all.

Every file zhtext writes goes through here: text through :func:`atomic_output`, binary files
(arrays, checkpoints, model weights) through :func:`atomic_path`.

- A regular file (or a new one) is written to a temporary file in the same folder, flushed to disk
  and renamed over the target, with the mode the umask gives; a failure, Ctrl-C or SIGTERM removes
  the temporary file, so a half-written output never takes the target's name.
- A symlink is followed: its target is written, the link stays.
- Anything that is not a regular file (a FIFO, a terminal, ``/dev/stdout``, a character device)
  is written straight through: renaming over it would replace the device with a file.
- ``-`` (or ``None``) is stdout.

Every failure to write (no folder, permissions, a read-only file system, a full disk, a pipe whose
reader has gone) becomes one :class:`~zhtext.errors.ZhtextError` naming the path (``<stdout>`` for
stdout) and the reason; :func:`check_output` finds the sure ones before the work starts. Temporary
files carry the writer's process id (``.NAME.zhtext-PID-XXXX.tmp``); one left by a killed run is
removed the next time the same output is written.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from zhtext.errors import ZhtextError

PathLike = str | os.PathLike

_TMP_TAG = ".zhtext-"

STDOUT = "<stdout>"  # stdout's name in messages, as the readers name stdin "<stdin>"


def _umask_mode(base: int = 0o666) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def publish_mode(path: PathLike) -> None:
    """Give a file the mode the umask gives new files (mkstemp and some writers make 0600)."""
    os.chmod(path, _umask_mode())


def write_error(path: PathLike, exc: OSError) -> ZhtextError:
    """One line for a failure to write ``path``: the path and the reason (no errno dump)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif exc.errno == errno.EPIPE:
        reason = "broken pipe (its reader closed it)"
    return ZhtextError(f"cannot write {path}: {reason}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a temporary file of a live writer is not stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: Path, name: str) -> None:
    """Remove temporary files of ``name`` left by runs that were killed (their process is gone)."""
    pattern = re.compile(rf"\.{re.escape(name)}{re.escape(_TMP_TAG)}(\d+)-.*\.tmp.*")
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            match = pattern.fullmatch(entry.name)
            if match and not process_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _resolve(path: PathLike) -> Path:
    """The path to write: a symlink's target (followed through every link), else the path."""
    target = Path(path)
    if target.is_symlink():
        with contextlib.suppress(OSError):
            return Path(os.path.realpath(target))
    return target


def _is_special(target: Path) -> bool:
    """An existing target that is not a regular file or a folder: write through, never rename."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output(path: PathLike | None) -> None:
    """Raise now the error that writing ``path`` would surely end in (a folder, a missing or
    unwritable folder), so that a command fails before its work (loading a model, encoding), not
    after it. Nothing is created, and a FIFO is not opened (that would wait for its reader).
    ``None`` and ``-`` (stdout) pass."""
    if path is not None and str(path) != "-":
        _writable_target(path)


def _writable_target(path: PathLike) -> Path:
    """The file that writing ``path`` writes (a symlink's target), once it is known that it can."""
    target = _resolve(path)
    if target.is_dir():
        raise ZhtextError(f"{path} is a directory; give a file name for the output")
    if _is_special(target):
        return target
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ZhtextError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):  # (root passes, unless the file system is read-only)
        raise ZhtextError(f"cannot write {path}: its folder {parent} is not writable")
    return target


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Give a path to write ``path``'s new contents to; see the module docstring.

    For a regular (or new) file the path given is a temporary file beside the target, renamed
    over it when the block ends without error and removed otherwise; for a FIFO or a device it is
    the target itself. The one atomic writer: :func:`atomic_output` and model folders build on it.
    """
    target = _writable_target(path)
    if _is_special(target):
        try:
            yield target
        except OSError as exc:
            raise write_error(path, exc) from None
        return
    parent = target.parent if str(target.parent) else Path(".")
    _remove_stale(parent, target.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{_TMP_TAG}{os.getpid()}-",
                                   suffix=".tmp" + target.suffix, dir=parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:  # the data reaches the disk before the name does
            os.fsync(handle.fileno())
        publish_mode(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def write_utf8(handle: IO[str], data: bytes) -> None:
    """Write the UTF-8 ``data`` to the text ``handle``: straight to its byte buffer when it writes
    UTF-8 (no decoding and encoding again), else as text in its own encoding."""
    buffer = getattr(handle, "buffer", None)
    if buffer is not None and codecs.lookup(getattr(handle, "encoding", None) or "ascii").name == "utf-8":
        handle.flush()  # what was written as text goes first
        buffer.write(data)
    else:
        handle.write(data.decode("utf-8"))


@contextlib.contextmanager
def atomic_output(path: PathLike | None, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Open ``path`` for writing text so that it appears whole or not at all (see
    :func:`atomic_path`). ``None`` or ``-`` writes to stdout."""
    if path is None or str(path) == "-":
        try:
            yield sys.stdout
            sys.stdout.flush()
        except OSError as exc:  # a closed pipe (EPIPE), a full disk behind a redirection
            raise write_error(STDOUT, exc) from None
        return
    with atomic_path(path) as tmp:
        try:
            handle = open(tmp, "w", encoding=encoding, newline="\n")
        except OSError as exc:
            raise write_error(path, exc) from None
        try:
            with handle:
                yield handle
        except OSError as exc:
            raise write_error(path, exc) from None
