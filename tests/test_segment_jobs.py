"""``zhtext segment --jobs N`` and the block engine under it (zhtext/lexical/parallel.py).

The output must be the same bytes for every number of threads, every block size and every cut of
the input, in every mode; the reference is the per-line API (``segment_lines`` of the lines that
``iter_lines`` reads), so the threaded path is checked against the path that is checked against
jieba (tests/test_jieba_modes.py). Small blocks and reader chunks make many blocks and threads
work on even short texts.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import zhtext.lexical.segment as segment_module
from tests.conftest import run_cli, sigint_as_usual
from zhtext.errors import ZhtextError
from zhtext.io import reading
from zhtext.io.reading import iter_lines
from zhtext.lexical import hmm as hmm_module
from zhtext.lexical import posseg, route
from zhtext.lexical.parallel import check_jobs, line_blocks, ordered_map, text_lines
from zhtext.lexical.segment import Segmenter

# (mode, hmm): jieba's cut with the HMM on and off, cut_for_search and full mode
MODES = [("default", True), ("default", False), ("search", True), ("all", False)]

# Line ends of every kind, empty lines, a "\r" that ends no line, spaces (full mode's empty words),
# ASCII runs and a last line without its "\n".
EDGES = (
    "我来到北京清华大学，学习自然语言处理。\r\n"
    "黛玉笑道：“你这会子又说这话了。”\n"
    "\n"
    "\r\n"
    "C++ 和 iPhone15 也照样切，圆周率3.14%。\r\r\n"
    "今天 天气\r不错\n"
    "\r"
    "最后一行没有换行符"
)


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


def reference(seg: Segmenter, path: Path, sep: str, mode: str, hmm: bool) -> str:
    """What ``zhtext segment`` writes, from the per-line API over the reader's lines."""
    lines = list(iter_lines(path))
    return "".join(s + "\n" for s in seg.segment_lines(lines, sep, mode=mode, hmm=hmm))


def random_cuts(text: str, rng: random.Random, most: int) -> list[str]:
    """``text`` cut at random places (a "\\r\\n" too) into pieces of 0..most characters."""
    pieces, i = [], 0
    while i < len(text):
        j = i + rng.randint(0, most)
        pieces.append(text[i:j])
        i = j
    return pieces


# ---------------------------------------------------------------- the engine's parts


def test_text_lines_are_the_lines_the_reader_yields(tmp_path):
    for text in (EDGES, "", "\n", "\r", "\r\n", "a", "a\n", "a\r", "\n\n", "a\r\r\n\rb\r"):
        path = tmp_path / "t.txt"
        path.write_bytes(text.encode("utf-8"))
        lines = list(iter_lines(path))
        codes, offsets = text_lines(text)
        got = [codes[a:b].tobytes().decode("utf-32-le") for a, b in itertools.pairwise(offsets)]
        assert got == lines, repr(text)


def test_line_blocks_hold_whole_lines_and_give_the_text_back():
    rng = random.Random(7)
    for block_chars in (1, 5, 40, 10_000):
        for most in (1, 3, 17):
            pieces = random_cuts(EDGES * 3, rng, most)
            blocks = list(line_blocks(pieces, block_chars))
            assert "".join(blocks) == EDGES * 3
            assert all(b.endswith("\n") for b in blocks[:-1])
    assert list(line_blocks([], 10)) == [] and list(line_blocks(["", ""], 10)) == []
    assert list(line_blocks(["ab", "c\nd", "e"], 2)) == ["abc\n", "de"]


def test_ordered_map_keeps_order_and_reads_a_stream_as_it_goes():
    taken = []

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    def slow_square(i: int) -> int:
        time.sleep(0.001 * ((i * 7) % 5))  # finish out of order
        return i * i

    results = ordered_map(slow_square, items(), jobs=3)
    assert next(results) == 0
    assert len(taken) <= 1 + 2 * 3  # bounded: not the whole stream
    assert [0, *results] == [i * i for i in range(100)]
    assert list(ordered_map(slow_square, iter([]), jobs=2)) == []


def test_ordered_map_raises_an_error_at_its_turn_and_stops():
    started = []

    def fail_at_5(i: int) -> int:
        started.append(i)
        if i == 5:
            raise ZhtextError("bad item")
        return i

    got: list[int] = []
    with pytest.raises(ZhtextError, match="bad item"):
        got.extend(ordered_map(fail_at_5, range(1000), jobs=2))
    assert got == [0, 1, 2, 3, 4]
    assert len(started) < 20  # the rest was dropped, not run
    assert not [t for t in threading.enumerate() if t.name.startswith("zhtext")]


def test_jobs_below_one_are_refused():
    assert check_jobs(None) >= 1 and check_jobs(3) == 3
    with pytest.raises(ZhtextError, match="at least 1"):
        check_jobs(0)


def test_the_segmentation_kernels_release_the_gil():
    """Threads run the kernels side by side only if every one of them is compiled nogil."""
    kernels = [
        obj
        for module in (segment_module, route, hmm_module, posseg)
        for obj in vars(module).values()
        if hasattr(obj, "targetoptions") and obj.__module__ == module.__name__
    ]
    assert len(kernels) > 20
    assert [k.__name__ for k in kernels if not k.targetoptions.get("nogil")] == []


def test_the_batch_methods_give_the_same_on_many_threads_at_once():
    """The list API's kernels release the GIL too: threads calling one Segmenter (lazy set-up
    included, on a fresh one) get what one thread gets."""
    lines = (EDGES * 30).split("\n")
    batches = [lines[i : i + 7] for i in range(0, len(lines), 7)]
    calls = [
        lambda s, b: s.cut_lines(b),
        lambda s, b: s.cut_lines(b, hmm=False, mode="search"),
        lambda s, b: s.cut_lines(b, mode="all"),
        lambda s, b: s.tokenize_lines(b),
        lambda s, b: s.tag_lines(b),
        lambda s, b: s.segment_lines(b, "/"),
    ]
    serial = Segmenter()
    want = [[call(serial, b) for b in batches] for call in calls]
    fresh = Segmenter()
    with ThreadPoolExecutor(4) as pool:
        got = [list(pool.map(lambda b, call=call: call(fresh, b), batches)) for call in calls]
    assert got == want


# ---------------------------------------------------------------- the library path


@pytest.mark.parametrize(("mode", "hmm"), MODES)
def test_segment_text_is_segment_lines_of_the_lines(seg, tmp_path, mode, hmm):
    path = tmp_path / "edges.txt"
    path.write_bytes(EDGES.encode("utf-8"))
    for sep in (" ", " / ", ""):
        want = reference(seg, path, sep, mode, hmm)
        assert seg.segment_text(EDGES, sep, mode=mode, hmm=hmm) == want
    assert seg.segment_text("", mode=mode, hmm=hmm) == ""


@pytest.mark.parametrize(("mode", "hmm"), MODES)
def test_every_jobs_block_size_and_cut_gives_the_same_output(seg, tmp_path, mode, hmm):
    text = EDGES * 20 + "\n" + EDGES
    path = tmp_path / "edges.txt"
    path.write_bytes(text.encode("utf-8"))
    want = reference(seg, path, " | ", mode, hmm)
    rng = random.Random(f"{mode} {hmm}")
    for jobs in (1, 2, 3):
        for block_chars in (1, 30, 1 << 18):
            pieces = random_cuts(text, rng, 50)
            pairs = list(
                seg.segment_chunks(
                    pieces, " | ", mode=mode, hmm=hmm, jobs=jobs, block_chars=block_chars
                )
            )
            assert "".join(out for _, out in pairs) == want, (jobs, block_chars)
            assert "".join(block for block, _ in pairs) == text
            assert len(pairs) > 20 or block_chars > 30


def test_novels_come_out_the_same_on_three_threads(seg, shared_data, tmp_path):
    """Real text with CRLF line ends, cut into many blocks by reader chunks of 64 KB."""
    for name in ("hongloumeng.txt", "xiyouji.txt"):
        head = b"".join((shared_data / "raw" / name).read_bytes().splitlines(keepends=True)[:1500])
        path = tmp_path / name
        path.write_bytes(head)
        text = head.decode("utf-8")
        for mode, hmm in MODES:
            want = reference(seg, path, " ", mode, hmm)
            chunks = [text[i : i + 65536] for i in range(0, len(text), 65536)]
            got = seg.segment_chunks(chunks, mode=mode, hmm=hmm, jobs=3, block_chars=20_000)
            assert "".join(out for _, out in got) == want, (name, mode, hmm)


def test_segment_file_writes_what_segment_text_gives(seg, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(EDGES.encode("gb18030"))  # the reader detects it
    seen = []
    seg.segment_file(src, tmp_path / "out.txt", " / ", jobs=2, progress=seen.append)
    assert (tmp_path / "out.txt").read_bytes().decode() == seg.segment_text(EDGES, " / ")
    assert "".join(seen) == EDGES
    with pytest.raises(ZhtextError, match="no such file"):
        seg.segment_file(tmp_path / "missing.txt", tmp_path / "never.txt")
    assert not (tmp_path / "never.txt").exists()
    with pytest.raises(ZhtextError, match="unknown segmentation mode"):
        seg.segment_chunks([], mode="fast")


# ---------------------------------------------------------------- the command line

CLI_CASES = [
    [],
    ["--no-hmm"],
    ["--mode", "search"],
    ["--mode", "all", "--sep", " / "],
    ["--pos"],
    ["--pos", "--no-hmm", "--format", "jsonl"],
    ["--offsets"],
    ["--offsets", "--mode", "search"],
    ["--format", "jsonl", "--mode", "search"],
]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks, reader chunks and batches of a few lines, so short inputs make many of each."""
    monkeypatch.setattr(segment_module, "BLOCK_CHARS", 40)
    monkeypatch.setattr(reading, "CHUNK_BYTES", 64)
    monkeypatch.setattr(segment_module, "BATCH_CHARS", 50)  # the command reads it when it runs


@pytest.mark.parametrize("args", CLI_CASES, ids=" ".join)
def test_cli_output_is_the_same_for_every_jobs(
    monkeypatch, capsys, tmp_path, seg, small_blocks, args
):
    text = EDGES * 8
    utf8, gb = tmp_path / "in.txt", tmp_path / "in.gb.txt"
    utf8.write_bytes(text.encode("utf-8"))
    gb.write_bytes(text.encode("gb18030"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    outputs = set()
    for jobs in ("1", "2", "3"):
        for src in (utf8, gb):
            out = tmp_path / f"out{jobs}.txt"
            argv = ["segment", str(src), "-j", jobs, "-o", str(out), *args]
            code, _, err = run_cli(monkeypatch, capsys, *argv)
            assert code == 0, err
            outputs.add(out.read_bytes())
        argv = ["segment", str(empty), "--jobs", jobs, *args]
        code, printed, err = run_cli(monkeypatch, capsys, *argv)
        assert (code, printed, err) == (0, "", "")
    assert len(outputs) == 1
    # and the same as before --jobs existed: one output line per line the reader yields
    written = outputs.pop().decode("utf-8")
    assert written.count("\n") == len(list(iter_lines(utf8)))
    if not args:
        assert written == seg.segment_text(text)


def zhtext(*args: str, stdin: bytes = b"", cwd: Path) -> subprocess.CompletedProcess:
    """The command in a subprocess, bytes in and out (a "\\r" must stay a "\\r")."""
    return subprocess.run([sys.executable, "-m", "zhtext", *args], input=stdin, cwd=cwd,
                          capture_output=True, timeout=300, check=False)  # fmt: skip


def test_stdin_with_two_jobs_and_a_bad_jobs_value(seg, tmp_path):
    res = zhtext("segment", "-j", "2", "--sep", "/", stdin=(EDGES * 50).encode(), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode() == seg.segment_text(EDGES * 50, "/")
    for bad in (["-j", "0"], ["--jobs", "-3"]):
        res = zhtext("segment", "in.txt", *bad, cwd=tmp_path)
        assert res.returncode == 2 and res.stdout == b""
        assert res.stderr.decode() == f"zhtext: error: {bad[0]} must be at least 1, got {bad[1]}\n"


@pytest.mark.parametrize(("signum", "status", "word"), [
    (signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated"),
])  # fmt: skip
def test_an_interrupted_run_on_two_jobs_ends_with_one_line_and_nothing_left(
    tmp_path, signum, status, word
):
    """Input keeps coming through a FIFO, so that the threads are at work when the signal comes."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhtext", "segment", str(fifo), "-o", "out.txt", "-q", "-j", "2"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_usual,  # noqa: PLW1509 - SIGINT as a shell leaves it
    )  # fmt: skip
    stop = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "w", encoding="utf-8") as writer:
                while not stop.is_set():
                    writer.write(EDGES * 2000)
        except (BrokenPipeError, OSError):
            pass  # the command has gone

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if ".tmp" in p.name] and time.monotonic() < deadline:
        time.sleep(0.05)  # the output's temporary file exists once the command runs
    time.sleep(1.0)
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)  # a thread left waiting would hang here
    finally:
        stop.set()
        proc.kill()
    assert proc.returncode == status, err
    assert err.strip() == f"zhtext: {word}", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fifo"]
