"""zhtext's segmenter against jieba, jieba_fast and rjieba in every jieba mode: speed and agreement.

One run, one process, the same text (the four classical novels in ../shared/data/raw; ``--quick``:
the first tenth of each) and the same dictionary (jieba's dict.txt; rjieba embeds its own copy,
so its agreement with jieba is printed too). Throughput is MB/s of UTF-8 input. For each mode:

    mode     zhtext                                          jieba
    hmm_off  cut(s, hmm=False)                               lcut(s, HMM=False)
    hmm      cut(s)                                          lcut(s)
    search   cut_for_search(s)                               lcut_for_search(s)
    all      cut_all(s)                                      lcut(s, cut_all=True)
    pos      tag(s)                                          posseg.lcut(s)
    tokenize tokenize(s)                                     list(tokenize(s))

zhtext runs one line at a time (the list API jieba users write), batched (``cut_lines`` /
``tag_lines`` / ``tokenize_lines``, 1,000 lines a call) and, where the mode has one, through the
joined-string path (``segment_lines(batch, " ", mode=..., hmm=...)``); rjieba and jieba_fast
(null when not installed) run line by line. ``identical`` is the share of ALL lines whose output
equals jieba's (the first differing lines are printed with where they part). Then the CLI as a
whole process, ``zhtext segment FILE -o OUT -q`` with ``--jobs 1`` and ``--jobs 2``, on a ~100 MB
file (``--quick``: 10 MB) of the novels repeated in a temporary folder; keywords
(``KeywordExtractor``) against ``jieba.analyse.extract_tags`` and ``jieba.analyse.textrank`` on
50-line documents (top 20: throughput and identical lists); and what starting costs: the first call
in a fresh process with an empty Numba cache (compiling) and with a warm one, the dictionary parsed
vs read from zhtext's cache.

Contenders run interleaved (``_common.race``); zhtext and rjieba are timed best of ``--repeats``,
jieba and jieba_fast (slow) once, each on all lines. Run it on a quiet machine: under load the
figures mean little.

    python benchmarks/segment_vs_jieba.py [--quick] [--repeats 3] [--data DIR] [--cli-mb 100]

The last line is JSON: {"bench": "segment_vs_jieba", "modes": {"hmm": {"zhtext_list_mb_s", ...},
...}, "tokenize": {...}, "cli_jobs1_mb_s", "cli_jobs2_mb_s", "keywords": {...}, ...}.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, log, race, run_measured, write_corpus

from zhtext.io.reading import iter_lines
from zhtext.lexical.keywords import KeywordExtractor
from zhtext.lexical.lexicon import jieba_dict_path
from zhtext.lexical.segment import Segmenter, load_dictionary

MB = 1_000_000
SEP = " "
BATCH = 1000  # lines per batched call
DOC_LINES = 50  # lines per keyword document
TOP = 20
SHOWN = 5  # differing lines printed per mode
MODES = ("hmm_off", "hmm", "search", "all", "pos")
CONTENDERS = ("zhtext_list", "zhtext_batch", "zhtext_joined", "rjieba", "jieba_fast", "jieba")
CHEAP = ("zhtext_list", "zhtext_batch", "zhtext_joined", "rjieba")  # timed best of --repeats
# jieba's posseg runs at a few tens of KB/s: the mode is timed on every 10th line
SUBSET = {"pos": 10}

_FIRST_CALL = """
import time
from zhtext.lexical.segment import Segmenter
t = time.perf_counter()
seg = Segmenter()
t_dict = time.perf_counter()
s = "黛玉笑道：我来到北京清华大学。"
seg.cut(s); seg.cut(s, hmm=False); seg.cut_for_search(s); seg.cut_all(s); seg.tokenize(s)
seg.tag(s); seg.segment_lines([s]); seg.segment_lines([s], mode="search")
print(t_dict - t, time.perf_counter() - t_dict)
"""


def first_call_seconds(numba_cache: str | None) -> tuple[float, float]:
    """(dictionary load, first call of every mode) in a fresh process, the dictionary cache warm.

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


def word_of(token: Any) -> str:
    return token if isinstance(token, str) else token[0]


def explain(line: str, mine: list, theirs: list) -> str:
    """Where two token lists of ``line`` part: the first differing token, its character offset
    (counted along zhtext's tokens, meaningful where they tile the line) and some context."""
    k = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs))
    )
    at = sum(len(word_of(t)) for t in mine[:k])
    return (
        f"  {line[:60]!r}: token {k} (char {at}): zhtext {mine[k : k + 4]} "
        f"vs jieba {theirs[k : k + 4]}"
    )


def batches(lines: list[str]) -> list[list[str]]:
    return [lines[i : i + BATCH] for i in range(0, len(lines), BATCH)]


def flat(per_batch: list[list]) -> list:
    return [item for batch in per_batch for item in batch]


class Anchors:
    """jieba (a fresh Tokenizer and POSTokenizer), jieba_fast (None when not installed, jieba's
    dictionary passed if its own differs) and rjieba (None when not installed)."""

    def __init__(self) -> None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        t = time.perf_counter()
        self.jieba = jieba.Tokenizer()
        self.jieba.initialize()
        self.jieba_init_s = time.perf_counter() - t
        self.jieba_pos = jieba.posseg.POSTokenizer(self.jieba)
        self.versions = {"jieba": jieba.__version__}
        self.jieba_fast = self.jieba_fast_pos = None
        self.jieba_fast_dict = None
        try:
            import jieba_fast
            import jieba_fast.posseg
        except ImportError:
            log("jieba_fast is not installed: its figures are null (pip install -e '.[bench]')")
        else:
            jieba_fast.setLogLevel(logging.WARNING)
            theirs = Path(jieba_fast.__file__).parent / "dict.txt"
            same = theirs.is_file() and _digest(theirs) == _digest(jieba_dict_path())
            self.jieba_fast_dict = "its own, the same as jieba's" if same else "jieba's, passed"
            self.jieba_fast = jieba_fast.Tokenizer(None if same else str(jieba_dict_path()))
            self.jieba_fast.initialize()
            self.jieba_fast_pos = jieba_fast.posseg.POSTokenizer(self.jieba_fast)
            self.versions["jieba_fast"] = _version("jieba_fast")
        try:
            import rjieba

            self.rjieba = rjieba
            self.versions["rjieba"] = _version("rjieba")
        except ImportError:
            self.rjieba = None
            log("rjieba is not installed: its figures are null (pip install -e '.[bench]')")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def pairs(tokens: list) -> list[tuple[str, str]]:
    """jieba's posseg ``pair`` objects as (word, tag) tuples."""
    return [(p.word, p.flag) for p in tokens]


def contenders(seg: Segmenter, anchors: Anchors, mode: str) -> dict[str, Callable]:
    """Per contender, a function of (lines, batches) giving one token list per line (the joined
    path: one string per line); a contender the mode lacks is absent."""
    rj, jb, jf = anchors.rjieba, anchors.jieba, anchors.jieba_fast
    hmm = mode != "hmm_off"
    fns: dict[str, Callable] = {}
    if mode in ("hmm_off", "hmm"):
        fns["zhtext_list"] = lambda ls, bs: [seg.cut(s, hmm=hmm) for s in ls]
        fns["zhtext_batch"] = lambda ls, bs: flat([seg.cut_lines(b, hmm=hmm) for b in bs])
        fns["zhtext_joined"] = lambda ls, bs: flat([seg.segment_lines(b, SEP, hmm=hmm) for b in bs])
        fns["rjieba"] = lambda ls, bs: [rj.cut(s, hmm) for s in ls]
        fns["jieba_fast"] = lambda ls, bs: [jf.lcut(s, HMM=hmm) for s in ls]
        fns["jieba"] = lambda ls, bs: [jb.lcut(s, HMM=hmm) for s in ls]
    elif mode == "search":
        fns["zhtext_list"] = lambda ls, bs: [seg.cut_for_search(s) for s in ls]
        fns["zhtext_batch"] = lambda ls, bs: flat([seg.cut_lines(b, mode="search") for b in bs])
        fns["zhtext_joined"] = lambda ls, bs: flat(
            [seg.segment_lines(b, SEP, mode="search") for b in bs]
        )
        fns["rjieba"] = lambda ls, bs: [rj.cut_for_search(s, True) for s in ls]
        fns["jieba_fast"] = lambda ls, bs: [jf.lcut_for_search(s) for s in ls]
        fns["jieba"] = lambda ls, bs: [jb.lcut_for_search(s) for s in ls]
    elif mode == "all":
        fns["zhtext_list"] = lambda ls, bs: [seg.cut_all(s) for s in ls]
        fns["zhtext_batch"] = lambda ls, bs: flat([seg.cut_lines(b, mode="all") for b in bs])
        fns["zhtext_joined"] = lambda ls, bs: flat(
            [seg.segment_lines(b, SEP, mode="all") for b in bs]
        )
        fns["rjieba"] = lambda ls, bs: [rj.cut_all(s) for s in ls]
        fns["jieba_fast"] = lambda ls, bs: [jf.lcut(s, cut_all=True) for s in ls]
        fns["jieba"] = lambda ls, bs: [jb.lcut(s, cut_all=True) for s in ls]
    elif mode == "pos":
        jbp, jfp = anchors.jieba_pos, anchors.jieba_fast_pos
        fns["zhtext_list"] = lambda ls, bs: [seg.tag(s) for s in ls]
        fns["zhtext_batch"] = lambda ls, bs: flat([seg.tag_lines(b) for b in bs])
        fns["rjieba"] = lambda ls, bs: [rj.tag(s, True) for s in ls]
        fns["jieba_fast"] = lambda ls, bs: [pairs(jfp.lcut(s)) for s in ls]
        fns["jieba"] = lambda ls, bs: [pairs(jbp.lcut(s)) for s in ls]
    else:  # tokenize, default mode
        fns["zhtext_list"] = lambda ls, bs: [seg.tokenize(s) for s in ls]
        fns["zhtext_batch"] = lambda ls, bs: flat([seg.tokenize_lines(b) for b in bs])
        fns["rjieba"] = lambda ls, bs: [rj.tokenize(s) for s in ls]
        fns["jieba_fast"] = lambda ls, bs: [list(jf.tokenize(s)) for s in ls]
        fns["jieba"] = lambda ls, bs: [list(jb.tokenize(s)) for s in ls]
    if rj is None:
        del fns["rjieba"]
    if jf is None:
        del fns["jieba_fast"]
    return fns


_REFERENCE: Callable | None = None  # jieba's function of the mode, inherited by the workers


def _reference_chunk(chunk: list[str]) -> list:
    return _REFERENCE(chunk, [])


def reference(fn: Callable, lines: list[str]) -> list:
    """``fn``'s output (jieba's) for ``lines``, untimed, over one forked worker per core."""
    global _REFERENCE
    _REFERENCE = fn
    chunks = [lines[i : i + 200] for i in range(0, len(lines), 200)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        return flat(pool.map(_reference_chunk, chunks))


def measure_mode(
    seg: Segmenter,
    anchors: Anchors,
    mode: str,
    novels: list[list[str]],
    repeats: int,
    fns: dict[str, Callable] | None = None,
) -> dict:
    """Seconds of each contender over every novel (interleaved, cheap ones best of ``repeats``;
    in a mode of ``SUBSET``, every contender on the same sample of lines) and the lines on which
    each agrees with jieba: all lines (outside the sample, jieba runs untimed in worker processes),
    jieba_fast's on the sample only. Outputs are dropped novel by novel. ``fns``: the contenders
    (default: :func:`contenders` of the mode)."""
    fns = fns or contenders(seg, anchors, mode)
    every = SUBSET.get(mode, 1)
    seconds = dict.fromkeys(fns, 0.0)
    same, seen = dict.fromkeys(fns, 0), dict.fromkeys(fns, 0)
    shown: list[str] = []

    def compare(outputs: dict[str, list], lines: list[str]) -> None:
        theirs = outputs.pop("jieba")
        for name, mine in outputs.items():
            seen[name] += len(lines)
            if name == "zhtext_joined":
                same[name] += sum(a == SEP.join(b) for a, b in zip(mine, theirs))
            else:
                same[name] += sum(a == b for a, b in zip(mine, theirs))
        for k, (a, b) in enumerate(zip(outputs["zhtext_list"], theirs)):
            if a != b and len(shown) < SHOWN:
                shown.append(explain(lines[k], a, b))

    timed_bytes = 0
    for lines in novels:
        timed = lines[::every]
        timed_bytes += sum(len(s.encode("utf-8")) for s in timed)
        bs = batches(timed)
        calls = {name: (lambda f=f, ls=timed, b=bs: f(ls, b)) for name, f in fns.items()}
        best = race(calls, 1)
        cheap = {name: call for name, call in calls.items() if name in CHEAP}
        for name, b in race(cheap, repeats - 1).items() if repeats > 1 else ():
            best[name].wall = min(best[name].wall, b.wall)
        for name, b in best.items():
            seconds[name] += b.wall
        compare({name: b.output for name, b in best.items()}, timed)
        del best
        if every > 1:
            rest = [s for k, s in enumerate(lines) if k % every]
            untimed = {n: f for n, f in fns.items() if n not in ("jieba", "jieba_fast")}
            outputs = {name: f(rest, batches(rest)) for name, f in untimed.items()}
            outputs["jieba"] = reference(fns["jieba"], rest)
            compare(outputs, rest)
    return {
        "seconds": seconds, "same": same, "seen": seen, "bytes": timed_bytes, "every": every,
        "shown": shown,
    }  # fmt: skip


def mode_figures(result: dict) -> dict:
    """The JSON figures of one mode: MB/s, shares of identical lines, ratios to rjieba."""
    sec, same, seen = result["seconds"], result["same"], result["seen"]

    def rate(name: str) -> float | None:
        return round(result["bytes"] / MB / sec[name], 3) if name in sec else None

    def share(name: str) -> float | None:
        return round(same[name] / max(seen[name], 1), 6) if name in same else None

    figures: dict[str, Any] = {f"{name}_mb_s": rate(name) for name in CONTENDERS}
    figures["identical"] = share("zhtext_list")
    figures["identical_batch"] = share("zhtext_batch")
    figures["identical_joined"] = share("zhtext_joined")
    figures["rjieba_identical"] = share("rjieba")
    figures["jieba_fast_identical"] = share("jieba_fast")
    rj = figures["rjieba_mb_s"]
    for key, name in (("list_vs_rjieba", "zhtext_list"), ("batch_vs_rjieba", "zhtext_batch"),
                      ("joined_vs_rjieba", "zhtext_joined")):  # fmt: skip
        mine = figures[f"{name}_mb_s"]
        figures[key] = round(mine / rj, 2) if mine and rj else None
    figures["list_vs_jieba"] = round(figures["zhtext_list_mb_s"] / figures["jieba_mb_s"], 2)
    figures["timed_every"] = result["every"]  # 1: all lines; k: every k-th line
    figures["differences"] = result["shown"]
    return figures


def fmt(value: float | None, spec: str = "8.2f") -> str:
    width = int(spec.split(".")[0])
    return f"{value:{spec}}" if value is not None else f"{'-':>{width}}"


def print_modes(table: dict[str, dict]) -> None:
    heads = ["list", "batch", "joined", "rjieba", "jieba_fast", "jieba"]
    print(f"\n{'MB/s of UTF-8 input':<75}{'ratio to rjieba':<16}identical to jieba, % of lines")
    print(
        f"{'mode':<9}" + "".join(f"{h:>11}" for h in heads)
        + f"{'list':>8}{'joined':>8}  {'zhtext':>8}{'rjieba':>8}{'j_fast':>8}"
    )  # fmt: skip
    for mode, f in table.items():
        rates = "".join(fmt(f[f"{name}_mb_s"], "11.2f") for name in CONTENDERS)
        ratios = fmt(f["list_vs_rjieba"], "8.2f") + fmt(f["joined_vs_rjieba"], "8.2f")
        shares = "".join(
            fmt(None if f[k] is None else 100 * f[k], "8.3f")
            for k in ("identical", "rjieba_identical", "jieba_fast_identical")
        )
        print(f"{mode:<9}{rates}{ratios}  {shares}")
    for mode, f in table.items():
        if f["timed_every"] > 1:
            print(
                f"{mode}: every contender timed on every {f['timed_every']}th line (jieba is slow "
                "there); identical shares on all lines, jieba_fast's on those timed"
            )
    for mode, f in table.items():
        if f["differences"]:
            print(f"{mode}: first lines where zhtext's list output differs from jieba's")
            print("\n".join(f["differences"]))


def measure_cli(novels: list[bytes], size_mb: float, repeats: int) -> dict:
    """``zhtext segment FILE -o OUT -q`` as a whole process with --jobs 1 and 2 (jobs 2 null
    when the command has no --jobs): MB/s of the file, best of ``repeats``, interleaved."""
    zhtext = [sys.executable, "-m", "zhtext"]
    help_text = subprocess.run(
        [*zhtext, "segment", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    jobs_list = [1, 2] if "--jobs" in help_text else [1]
    if len(jobs_list) == 1:
        log("zhtext segment has no --jobs: jobs 1 runs without it, jobs 2 is null")
    best = dict.fromkeys(jobs_list, float("inf"))
    with tempfile.TemporaryDirectory(prefix="zhtext-segment-bench-") as tmp:
        corpus = Path(tmp) / "big.txt"
        n_bytes = write_corpus(corpus, novels, int(size_mb * MB))
        for _ in range(repeats):
            for jobs in jobs_list:
                cmd = [*zhtext, "segment", str(corpus), "-o", str(Path(tmp) / f"out{jobs}.txt")]
                cmd += ["-q", "--jobs", str(jobs)] if len(jobs_list) > 1 else ["-q"]
                seconds, _, _, rc = run_measured(cmd)
                if rc != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed (exit {rc})")
                best[jobs] = min(best[jobs], seconds)
        lines_in = count_lines(corpus)
        lines_out = {jobs: count_lines(Path(tmp) / f"out{jobs}.txt") for jobs in jobs_list}
        digests = {_digest(Path(tmp) / f"out{jobs}.txt") for jobs in jobs_list}
    mb_s = {jobs: n_bytes / MB / seconds for jobs, seconds in best.items()}
    jobs2 = mb_s.get(2)
    return {
        "cli_mb": round(n_bytes / MB, 1),
        "cli_jobs1_mb_s": round(mb_s[1], 2),
        "cli_jobs2_mb_s": round(jobs2, 2) if jobs2 else None,
        "cli_jobs_ratio": round(jobs2 / mb_s[1], 2) if jobs2 else None,
        "cli_same_output": len(digests) == 1 if jobs2 else None,
        "cli_lines_kept": all(n == lines_in for n in lines_out.values()),
    }


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def documents(novels: list[list[str]]) -> list[str]:
    """Each novel in documents of ``DOC_LINES`` lines."""
    return [
        "\n".join(lines[i : i + DOC_LINES])
        for lines in novels
        for i in range(0, len(lines), DOC_LINES)
    ]


def measure_keywords(docs: list[str], every: int, repeats: int) -> dict:
    """``KeywordExtractor`` against ``jieba.analyse`` (TF-IDF on every document, TextRank on every
    ``every``-th): documents per second, interleaved, and the documents with identical top lists."""
    import jieba.analyse

    figures: dict[str, Any] = {}
    for method, theirs, subset in (
        ("tfidf", jieba.analyse.extract_tags, docs),
        ("textrank", jieba.analyse.textrank, docs[::every]),
    ):
        mine = KeywordExtractor(method)
        mine(subset[0], top=TOP), theirs(subset[0], topK=TOP)  # tables loaded, kernels compiled
        calls = {
            "zhtext": lambda m=mine, ds=subset: [m(d, top=TOP) for d in ds],
            "jieba": lambda t=theirs, ds=subset: [t(d, topK=TOP) for d in ds],
        }
        best = race(calls, 1)
        if repeats > 1:
            more = race({"zhtext": calls["zhtext"]}, repeats - 1)["zhtext"]
            best["zhtext"].wall = min(best["zhtext"].wall, more.wall)
        ours, jiebas = best["zhtext"].output, best["jieba"].output
        differ = [k for k, (a, b) in enumerate(zip(ours, jiebas)) if a != b]
        zh, jb = len(subset) / best["zhtext"].wall, len(subset) / best["jieba"].wall
        figures[method] = {
            "docs": len(subset),
            "zhtext_docs_s": round(zh, 2),
            "jieba_docs_s": round(jb, 2),
            "ratio": round(zh / jb, 2),
            "identical_top20": round(1 - len(differ) / len(subset), 6),
            "differences": [
                f"  document {k}: zhtext {ours[k]} vs jieba {jiebas[k]}" for k in differ[:2]
            ],
        }
    return {**figures.pop("tfidf"), "textrank": {**figures["textrank"], "every": every}}


def startup() -> dict:
    """The dictionary parsed vs read from zhtext's cache, and the first call in a new process."""
    t = time.perf_counter()
    load_dictionary(jieba_dict_path(), cache=False)
    parse_s = time.perf_counter() - t
    load_dictionary(jieba_dict_path())  # make sure the dictionary cache exists
    with tempfile.TemporaryDirectory() as empty:
        _, compile_s = first_call_seconds(empty)
    first_call_seconds(None)  # fill Numba's own cache
    cached_s, first_call_s = first_call_seconds(None)
    print(
        f"first call of every mode in a process: {compile_s:.2f} s compiling (empty Numba cache), "
        f"{first_call_s:.2f} s from Numba's cache"
    )
    print(f"dictionary: parse + build {parse_s:.2f} s, from zhtext's cache {cached_s:.3f} s")
    return {
        "compile_s": round(compile_s, 2), "first_call_s": round(first_call_s, 3),
        "dict_parse_s": round(parse_s, 3), "dict_cached_s": round(cached_s, 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the first tenth of each novel only")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for zhtext and rjieba")
    parser.add_argument("--data", type=Path, default=DATA_DIR / "raw", help="folder of novels")
    parser.add_argument(
        "--cli-mb", type=float, help="size of the CLI's file (default 100, quick 10)"
    )
    parser.add_argument("--no-startup", action="store_true", help="skip the first-call figures")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    paths = sorted(args.data.glob("*.txt")) if args.data.is_dir() else []
    if not paths:
        log(f"skipped: no novels (*.txt) in {args.data}")
        return
    novels = [list(iter_lines(p)) for p in paths]
    if args.quick:
        novels = [n[: max(len(n) // 10, 1)] for n in novels]
    lines = flat(novels)
    n_bytes = sum(len(s.encode("utf-8")) for s in lines)
    print(f"text: {len(lines):,} lines, {n_bytes / MB:.2f} MB UTF-8 ({args.data})")
    figures: dict[str, Any] = {"bench": "segment_vs_jieba", "quick": args.quick}
    figures |= {"lines": len(lines), "mb": round(n_bytes / MB, 3), "repeats": args.repeats}
    if not args.no_startup:
        figures |= startup()

    seg = Segmenter()
    anchors = Anchors()
    print(f"jieba_fast's dictionary: {anchors.jieba_fast_dict}; versions {anchors.versions}")
    figures |= {"versions": anchors.versions, "jieba_fast_dict": anchors.jieba_fast_dict}
    warm = lines[:50]
    table = {}
    for mode in (*MODES, "tokenize"):
        every = SUBSET.get(mode, 1)
        log(f"{mode}: timing every contender" + (f" on every {every}th line" if every > 1 else ""))
        for fn in contenders(seg, anchors, mode).values():
            fn(warm, batches(warm))  # kernels compiled or loaded, tables read
        result = measure_mode(seg, anchors, mode, novels, args.repeats)
        table[mode] = mode_figures(result)
    print(f"(zhtext and rjieba best of {args.repeats}, jieba and jieba_fast once, interleaved; "
          f"batched: {BATCH:,} lines a call)")  # fmt: skip
    print_modes(table)
    tokenize = table.pop("tokenize")
    figures["modes"] = table
    figures["tokenize"] = tokenize

    log("the CLI as a whole process")
    raw = [p.read_bytes() for p in paths]
    raw = [n if n.endswith(b"\n") else n + b"\n" for n in raw]
    cli = measure_cli(raw, args.cli_mb or (10 if args.quick else 100), repeats=2)
    print(
        f"\nzhtext segment FILE -o OUT -q on {cli['cli_mb']} MB (whole process, best of 2): "
        f"--jobs 1 {cli['cli_jobs1_mb_s']} MB/s, --jobs 2 {cli['cli_jobs2_mb_s']} MB/s, "
        f"ratio {cli['cli_jobs_ratio']}; same output {cli['cli_same_output']}, "
        f"a line out per line in {cli['cli_lines_kept']}"
    )
    figures |= cli

    log("keywords")
    docs = documents(novels)
    every = 5 if args.quick else 10  # jieba's TextRank tags with posseg: slow
    kw = measure_keywords(docs, every, args.repeats)
    for name, f in (("extract_tags", kw), ("textrank", kw["textrank"])):
        print(
            f"keywords {name:<12} top {TOP} of {f['docs']:,} documents of {DOC_LINES} lines"
            f"{f' (every {every}th)' if name == 'textrank' and every > 1 else ''}: "
            f"zhtext {f['zhtext_docs_s']:.1f} docs/s, jieba {f['jieba_docs_s']:.1f} docs/s, "
            f"ratio {f['ratio']:.1f}x, identical lists {100 * f['identical_top20']:.2f} %"
        )
        if f["differences"]:
            print("\n".join(f["differences"]))
    figures["keywords"] = kw
    emit_json(figures)


if __name__ == "__main__":
    main()
