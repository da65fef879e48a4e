"""Writing outputs so that they appear whole or not at all.

Every file zhtext writes goes through here: text through :func:`atomic_output`, binary files
(arrays, checkpoints) through :func:`atomic_path`. A failure or Ctrl-C removes the temporary file,
so a half-written output never takes the target's name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from zhtext.errors import ZhtextError

PathLike = str | os.PathLike


def _publish(tmp: str) -> None:
    # mkstemp creates files readable by the owner only; give outputs the usual umask mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to write to; it is renamed over ``path`` when the
    block ends without error and removed otherwise (Ctrl-C included). The one atomic writer:
    :func:`atomic_output` and model folders build on it."""
    target = Path(path)
    if target.is_dir():
        raise ZhtextError(f"{target} is a directory; give a file name for the output")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ZhtextError(f"output folder does not exist: {parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publish(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: PathLike | None, encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Open ``path`` for writing text so that it appears whole or not at all (see
    :func:`atomic_path`). ``None`` or ``-`` writes to stdout."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as handle:
        yield handle
