"""Helpers shared by the benchmark scripts: where the evaluation data lives, the closing JSON line,
and the peak memory of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ../shared/data relative to the repository root (never copied into the repo).
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_files(*relative: str) -> list[Path]:
    """The named files under the shared data directory; exit 0 with a message when one is absent."""
    paths = [DATA_DIR / name for name in relative]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"skipped: evaluation data not found ({', '.join(missing)})", file=sys.stderr)
        raise SystemExit(0)
    return paths


def log(message: str) -> None:
    """A progress message on stderr (stdout keeps the figures)."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Best:
    """The last output of a raced function and its best wall-clock and CPU seconds."""

    output: Any = None
    wall: float = float("inf")
    cpu: float = float("inf")


def race(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Best]:
    """Run each function ``repeats`` times, interleaved, so that load from other processes on the
    machine falls on all of them alike; the best times of each."""
    best = {name: Best() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn()
            b = best[name]
            b.output = out
            b.wall = min(b.wall, time.perf_counter() - wall)
            b.cpu = min(b.cpu, time.process_time() - cpu)
    return best


def emit_json(figures: dict) -> None:
    """Print the benchmark's figures as its last line: one JSON object."""
    print(json.dumps(figures, ensure_ascii=False), flush=True)


def run_measured(
    cmd: list[str], timeout: float | None = None, **popen_args
) -> tuple[float, float, float, int]:
    """Run ``cmd`` to completion (killed after ``timeout`` seconds, if given: exit code -9); return
    wall seconds, CPU seconds (user + system), peak resident MB and exit code of that child.

    ``os.wait4`` gives the resource usage of exactly this child, unlike RUSAGE_CHILDREN, whose
    ``ru_maxrss`` is the maximum over every child the process has waited for.
    """
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen_args)
    timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if timer is not None:
            timer.cancel()
    seconds = time.perf_counter() - begin
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak_mb = usage.ru_maxrss / ((1 << 20) if sys.platform == "darwin" else (1 << 10))
    return seconds, usage.ru_utime + usage.ru_stime, peak_mb, proc.returncode


def write_corpus(path: Path, novels: list[bytes], size: int) -> int:
    """Write the novels over and over up to about ``size`` bytes; return the bytes written.

    The last copy is cut at a line break, so the file stays valid UTF-8.
    """
    written = 0
    with open(path, "wb") as out:
        while written < size:
            for novel in novels:
                part = novel
                if written + len(part) > size:
                    part = novel[: novel.rfind(b"\n", 0, size - written) + 1]
                out.write(part)
                written += len(part)
                if written >= size or not part:
                    return written
    return written
