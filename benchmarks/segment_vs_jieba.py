"""zhtext's segmenter against ``jieba.lcut(line, HMM=False)`` (``--hmm``: ``jieba.lcut(line)``):
speed and agreement.

Same dictionary (jieba's dict.txt), same text (the four classical novels in ../shared/data/raw),
both loaded before timing, one process. Prints throughput in MB/s of UTF-8 input for zhtext's batch
path (``Segmenter.segment_lines``, words joined in Numba) and for jieba line by line, their ratio,
the share of lines with identical output (differences are printed), zhtext's ``cut()`` (one Python
list of words per line) for comparison, and what starting costs: the first call in a fresh process
with an empty Numba cache (compiling) and with a warm one, the dictionary parsed vs read from
zhtext's cache.

    python benchmarks/segment_vs_jieba.py [--quick] [--hmm]

The last line is JSON: {"bench": "segment_vs_jieba", "ratio": ..., "identical": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zhtext.io.reading import iter_lines
from zhtext.lexical.lexicon import jieba_dict_path
from zhtext.lexical.segment import Segmenter, load_dictionary

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"
SEP = " "

_FIRST_CALL = """
import time
from zhtext.lexical.segment import Segmenter
t = time.perf_counter()
seg = Segmenter()
t_dict = time.perf_counter()
seg.segment_lines(["我来到北京清华大学"]); seg.cut("x")
print(t_dict - t, time.perf_counter() - t_dict)
"""


def first_call_seconds(numba_cache: str | None) -> tuple[float, float]:
    """(dictionary load, first segmentation) in a fresh process, the dictionary cache warm.

    With ``numba_cache`` an empty folder, the first call compiles every kernel (a first install);
    without, it loads them from Numba's cache (every later run). Either way it includes Numba's
    one-off start-up in a process.
    """
    env = dict(os.environ)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache
    res = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    load, first = res.stdout.split()
    return float(load), float(first)


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def explain(line: str, mine: list[str], theirs: list[str]) -> str:
    """Where two segmentations of ``line`` part: the first differing token and its context."""
    k = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs))
    )
    at = len("".join(mine[:k]))
    whole = "".join(mine) == line and "".join(theirs) == line
    return (
        f"  line {line[:60]!r}: from char {at}, zhtext {mine[k : k + 4]} "
        f"vs jieba {theirs[k : k + 4]} (both concatenate back to the line: {whole})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the first tenth of each novel only")
    parser.add_argument("--hmm", action="store_true", help="with jieba's HMM on (jieba's default)")
    args = parser.parse_args()
    if not RAW.is_dir():
        print(f"skipped: {RAW} is absent (the four novels are needed)")
        return
    lines: list[str] = []
    for path in sorted(RAW.glob("*.txt")):
        novel = list(iter_lines(path))
        lines += novel[: len(novel) // 10] if args.quick else novel
    n_bytes = sum(len(s.encode("utf-8")) for s in lines)
    print(f"text: {len(lines):,} lines, {n_bytes / 1e6:.2f} MB UTF-8 ({RAW})")

    # Loading costs, each in a fresh process
    parse_s, _ = best_of(1, lambda: load_dictionary(jieba_dict_path(), cache=False))
    load_dictionary(jieba_dict_path())  # make sure the dictionary cache exists
    with tempfile.TemporaryDirectory() as empty:
        _, compile_s = first_call_seconds(empty)
    first_call_seconds(None)  # fill Numba's own cache
    cached_s, first_call_s = first_call_seconds(None)
    print(
        f"first call in a process: {compile_s:.2f} s compiling (empty Numba cache), "
        f"{first_call_s:.2f} s from Numba's cache"
    )
    print(f"dictionary: parse + build {parse_s:.2f} s, from zhtext's cache {cached_s:.3f} s")
    hmm = args.hmm
    seg = Segmenter(hmm=hmm)
    seg.segment_lines(lines[:1])
    seg.cut("热身")

    import jieba

    tok = jieba.Tokenizer()
    tok.initialize()
    tok.lcut("热身", HMM=hmm)

    # Speed
    zh_s, joined = best_of(3, lambda: seg.segment_lines(lines, SEP))
    cut_s, _ = best_of(1, lambda: [seg.cut(s) for s in lines])
    jb_s, theirs = best_of(1, lambda: [tok.lcut(s, HMM=hmm) for s in lines])
    mb, cut_mb, jb_mb = n_bytes / zh_s / 1e6, n_bytes / cut_s / 1e6, n_bytes / jb_s / 1e6
    print(f"zhtext segment_lines (batch): {mb:8.2f} MB/s  ({zh_s:.3f} s)")
    print(f"zhtext cut() per line:        {cut_mb:8.2f} MB/s  ({cut_s:.3f} s)")
    print(f"jieba lcut(HMM={hmm!s:<5}):        {jb_mb:8.2f} MB/s  ({jb_s:.3f} s)")
    print(f"ratio (batch / jieba): {mb / jb_mb:.1f}x; cut() / jieba: {cut_mb / jb_mb:.1f}x")

    # Agreement: the same words, and the batch output equal to jieba's words joined
    mine = seg.cut_lines(lines)
    same = [a == b and j == SEP.join(b) for a, b, j in zip(mine, theirs, joined)]
    identical = sum(same) / max(len(lines), 1)
    print(f"identical lines: {sum(same):,} / {len(lines):,} ({100 * identical:.3f} %)")
    for k in [k for k, ok in enumerate(same) if not ok][:5]:
        print(explain(lines[k], mine[k], theirs[k]))

    print(json.dumps({
        "bench": "segment_vs_jieba", "ratio": round(mb / jb_mb, 2), "identical": identical,
        "mb_per_s": round(mb, 2), "jieba_mb_per_s": round(jb_mb, 3),
        "cut_mb_per_s": round(cut_mb, 2), "cut_ratio": round(cut_mb / jb_mb, 2),
        "lines": len(lines), "mb": round(n_bytes / 1e6, 3), "quick": args.quick, "hmm": hmm,
        "compile_s": round(compile_s, 2), "first_call_s": round(first_call_s, 3),
        "dict_parse_s": round(parse_s, 3), "dict_cached_s": round(cached_s, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
