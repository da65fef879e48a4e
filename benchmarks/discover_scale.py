"""How the cost of `zhtext discover` grows with the corpus: MB/s and peak memory at 10, 100, 1000 MB.

The corpus is the four classical novels of ../shared/data/raw repeated to each size in a temporary
file (deleted afterwards). Each size runs `zhtext discover BIG.txt -o lex.tsv -q --max-n 4` in a
fresh process, so the peak resident memory measured (that child's ru_maxrss) belongs to that run
alone; the time is the whole command's wall clock, start-up and writing the lexicon included.
MB are megabytes (10^6 bytes) of UTF-8 input.

Anchors (2 cores, 94 MB of text): Su Jianlin's KenLM word discovery 1.9 MB/s and 2.5 GB peak;
nlp-zero's minimum-entropy Word_Finder 3.2 MB/s. Targets: >= 20 MB/s, < 1 GB peak at 100 MB,
sub-linear memory growth beyond.

    python benchmarks/discover_scale.py [--quick]      # --quick: 10 and 30 MB only
    python benchmarks/discover_scale.py --sizes 10 100

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, run_measured, write_corpus

MB = 1_000_000
ANCHORS = {"KenLM word discovery": 1.9, "nlp-zero Word_Finder": 3.2}  # MB/s on 94 MB


def count_words(lexicon: Path) -> int:
    """Entries of two or more characters in a TSV lexicon."""
    with open(lexicon, encoding="utf-8") as f:
        return sum(1 for line in f if len(line.split("\t", 1)[0]) > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 and 30 MB only")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="corpus sizes in MB (default 10 100 1000)"
    )
    parser.add_argument("--max-n", type=int, default=4, help="longest n-gram counted")
    args = parser.parse_args()
    sizes = args.sizes or ([10, 30] if args.quick else [10, 100, 1000])
    novels_paths = sorted((DATA_DIR / "raw").glob("*.txt"))
    if not novels_paths:
        print(f"skipped: no novels in {DATA_DIR / 'raw'}", file=sys.stderr)
        raise SystemExit(0)
    novels = [p.read_bytes() for p in novels_paths]
    novels = [n if n.endswith(b"\n") else n + b"\n" for n in novels]
    zhtext = [sys.executable, "-m", "zhtext"]

    runs = []
    # CPU seconds too: on a busy machine they show the cost that wall-clock time hides.
    print(
        f"{'MB':>7} {'seconds':>8} {'MB/s':>7} {'CPU s':>7} {'MB/CPU s':>8} {'peak MB':>8} "
        f"{'MB peak/MB':>10} {'words':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="zhtext-scale-") as tmp:
        free = shutil.disk_usage(tmp).free
        for size_mb in sizes:
            if free < 2.2 * size_mb * MB:  # the corpus plus the spilled id corpus, with room
                print(f"{size_mb:>7} skipped: {free / MB:,.0f} MB free in {tmp}")
                continue
            corpus, lexicon = Path(tmp) / "big.txt", Path(tmp) / "lex.tsv"
            nbytes = write_corpus(corpus, novels, size_mb * MB)
            cmd = [
                *zhtext,
                "discover",
                str(corpus),
                "-o",
                str(lexicon),
                "-q",
                "--max-n",
                str(args.max_n),
            ]
            seconds, cpu_seconds, peak_mb, rc = run_measured(cmd)
            corpus.unlink()
            if rc != 0:
                raise SystemExit(f"zhtext discover failed (exit {rc}) on {nbytes / MB:.0f} MB")
            words = count_words(lexicon)
            lexicon.unlink()
            run = {
                "mb": round(nbytes / MB, 1),
                "mb_per_s": round(nbytes / MB / seconds, 2),
                "peak_mb": round(peak_mb, 1),
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu_seconds, 2),
                "mb_per_cpu_s": round(nbytes / MB / cpu_seconds, 2),
                "words": words,
            }
            runs.append(run)
            print(
                f"{run['mb']:>7} {run['seconds']:>8} {run['mb_per_s']:>7} {run['cpu_seconds']:>7} "
                f"{run['mb_per_cpu_s']:>8} {run['peak_mb']:>8} "
                f"{peak_mb / (nbytes / MB):>10.2f} {words:>8,}",
                flush=True,
            )
    if len(runs) > 1:
        for a, b in itertools.pairwise(runs):
            growth = (b["peak_mb"] - a["peak_mb"]) / (b["mb"] - a["mb"])
            print(
                f"memory growth {a['mb']:.0f} -> {b['mb']:.0f} MB: {growth:.2f} MB per MB of corpus "
                f"(x{b['peak_mb'] / a['peak_mb']:.2f} memory for x{b['mb'] / a['mb']:.1f} corpus)"
            )
    print(
        "anchors: "
        + ", ".join(f"{name} {v} MB/s" for name, v in ANCHORS.items())
        + "; target >= 20 MB/s, peak < 1000 MB at 100 MB"
    )
    emit_json({"bench": "discover_scale", "max_n": args.max_n, "runs": runs})


if __name__ == "__main__":
    main()
