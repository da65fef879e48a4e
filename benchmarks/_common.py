"""Helpers shared by the benchmark scripts: where the evaluation data lives, the closing JSON line,
and the peak memory of a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
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


def read_quiet(reader: Callable[[Path], Any], path: Path) -> Any:
    """``reader(path)`` without its warnings (a nested mention dropped, as expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reader(path)


def raw_texts(exclude_cluener_train: bool = False) -> tuple[list[str], dict[str, int]]:
    """The unlabelled Chinese text at hand under the shared data (whatever of it is present): the
    CLUENER train and test texts (never dev), the LCSTS training articles and titles, the People's
    Daily NER texts; one stripped, non-empty line each, and the count of each source."""
    from zhtext.labels.formats import read_examples
    from zhtext.tasks.titledata import read_pairs

    cluener, lcsts, peoples = (DATA_DIR / "ner" / "cluener", DATA_DIR / "title" / "lcsts",
                               DATA_DIR / "ner" / "peoples_daily")  # fmt: skip
    lines: list[str] = []
    sources: dict[str, int] = {}
    names = ("test.json",) if exclude_cluener_train else ("train.json", "test.json")
    for name in names:  # JSON lines with a "text" (test.json: no labels)
        if (cluener / name).is_file():
            with open(cluener / name, encoding="utf-8") as handle:
                texts = [json.loads(line)["text"] for line in handle if line.strip()]
            sources[f"cluener/{name}"] = len(texts)
            lines += texts
    if (lcsts / "train.tsv").is_file():
        pairs = read_pairs(lcsts / "train.tsv")
        sources["lcsts/train.tsv"] = len(pairs)
        lines += [text for pair in pairs for text in (pair.content, pair.title)]
    for name in ("example.dev", "example.test"):
        if (peoples / name).is_file():
            texts = [ex.text for ex in read_quiet(read_examples, peoples / name)]
            sources[f"peoples_daily/{name}"] = len(texts)
            lines += texts
    return [line.strip() for line in lines if line.strip()], sources


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
