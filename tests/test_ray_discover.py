"""Discovery on Ray gives the lexicon of a local run to the bit (words, counts, bits per
character), for any number of workers; its inputs and failures are those of the CLI."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import run_cli
from zhtext.distributed.discover import RayEngine, discover
from zhtext.lexical.corpus import FIRST_RUN_ID, LAST_RUN_ID
from zhtext.lexical.discover import Discoverer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data"))
from generate_corpus import generate  # noqa: E402


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> list[Path]:
    """Three files: UTF-8 with ASCII runs, GB18030, UTF-8 with a BOM and CRLF lines."""
    root = tmp_path_factory.mktemp("ray-corpus")
    rng = random.Random(3)
    lines = generate(2400, seed=11)
    runs = ["iPhone手机", "2024年", "5G网络", "MP3格式"]
    mixed = [line[:k] + rng.choice(runs) + line[k:] for line in lines
             for k in [rng.randint(0, len(line))]]
    paths = [root / "a.txt", root / "b.txt", root / "c.txt"]
    paths[0].write_text("\n".join(mixed[:1400]) + "\n", encoding="utf-8")
    paths[1].write_bytes(("\n".join(lines[1400:2000]) + "\n").encode("gb18030"))
    paths[2].write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(mixed[2000:]) + "\r\n").encode("utf-8"))
    return paths


def _same(a, b) -> None:
    assert a.counts == b.counts
    assert a.bits_per_char == b.bits_per_char  # to the bit


@pytest.mark.parametrize("sampled", [False, True])
def test_ray_lexicon_is_the_local_one(ray_session, corpus_files, monkeypatch, sampled):
    # Small splits, so that every pass really merges many tables; a small sample size makes the
    # re-estimation sample and the final whole-corpus count run too.
    monkeypatch.setattr("zhtext.io.splits.SPLIT_BYTES", 9000)
    options = {"min_count": 3, "sample_units": 20_000 if sampled else 1 << 22}
    local = Discoverer(**options).run(corpus_files)
    assert len([w for w in local.counts if len(w) > 1]) > 50
    assert {"5G网络", "2024年"} <= set(local.counts)  # a letter/digit run is one unit
    for workers in (1, 2, 3):
        finder = Discoverer(**options)
        _same(local, finder.run(corpus_files, engine=RayEngine(workers=workers)))
    assert finder.stats.chars_read == local_chars(corpus_files)


def local_chars(paths: list[Path]) -> int:
    return sum(len(p.read_bytes().decode("gb18030" if p.name == "b.txt" else "utf-8-sig"))
               for p in paths)


def test_run_ids_follow_first_occurrence_past_the_id_space(ray_session, tmp_path, monkeypatch):
    # More distinct letter/digit runs than ids: which runs get an id (and which become
    # separators) depends on reading order, which the Ray read must reproduce.
    monkeypatch.setattr("zhtext.io.splits.SPLIT_BYTES", 50_000)
    rng = random.Random(1)
    n = LAST_RUN_ID - FIRST_RUN_ID + 3000
    words = [f"w{i}" for i in range(n)]
    rng.shuffle(words)
    han = generate(900, seed=5)
    lines = [han[i % len(han)] + " ".join(words[i * 40 : (i + 1) * 40]) + han[(i + 7) % len(han)]
             for i in range(n // 40 + 1)]
    path = tmp_path / "runs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local = Discoverer(min_count=2).run(path)
    _same(local, discover(path, engine="ray", workers=2, min_count=2))


def test_directories_and_globs(ray_session, corpus_files):
    folder = corpus_files[0].parent
    local = Discoverer(min_count=3).run(sorted(corpus_files))
    _same(local, discover(str(folder), engine="ray", min_count=3))
    _same(local, discover(str(folder / "*.txt"), engine="ray", min_count=3))


def test_cli_ray_writes_the_local_lexicon(ray_session, corpus_files, tmp_path, monkeypatch, capsys):
    out_local, out_ray = tmp_path / "local.tsv", tmp_path / "ray.tsv"
    args = [str(p) for p in corpus_files]
    assert run_cli(monkeypatch, capsys, "discover", *args, "-o", str(out_local), "-q")[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, "discover", *args, "--ray", "-o", str(out_ray),
                           "-q", "--workers", "2")
    assert (code, err) == (0, "")
    assert out_ray.read_text(encoding="utf-8") == out_local.read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["-", "--ray"], "a Ray run cannot read stdin"),
    (["MISSING", "--ray"], "no such file: MISSING"),
    (["DIR/*.none", "--ray"], "no file matches"),
])
def test_cli_ray_errors(ray_session, tmp_path, monkeypatch, capsys, args, message):
    args = [a.replace("MISSING", str(tmp_path / "missing.txt")).replace("DIR", str(tmp_path))
            for a in args]
    message = message.replace("MISSING", str(tmp_path / "missing.txt"))
    code, out, err = run_cli(monkeypatch, capsys, "discover", *args)
    assert code == 1 and out == ""
    assert err.startswith("zhtext: error: ") and message in err and err.count("\n") == 1


def test_unreachable_cluster_and_missing_ray(tmp_path, monkeypatch, capsys):
    # No Ray session in this process's way: the address is tried before anything else.
    import socket

    from zhtext.distributed import cluster as cluster_module

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused at once
        monkeypatch.setattr(cluster_module, "_quiet_ray", lambda: None)
        monkeypatch.setattr("ray.is_initialized", lambda: False)
        corpus = tmp_path / "c.txt"
        corpus.write_text("一些文字\n", encoding="utf-8")
        code, _, err = run_cli(monkeypatch, capsys, "discover", str(corpus), "--ray",
                               f"127.0.0.1:{port}")
    assert code == 1
    assert err.startswith(f"zhtext: error: cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert err.count("\n") == 1
    code, _, err = run_cli(monkeypatch, capsys, "discover", str(corpus), "--ray", "nonsense:x")
    # not an address: read as a second corpus path
    assert code == 1 and "no such file: nonsense:x" in err
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli(monkeypatch, capsys, "discover", str(corpus), "--ray")
    assert (code, err) == (1, "zhtext: error: Ray is not installed: pip install 'zhtext[ray]'\n")


def _task_pids(names: tuple[str, ...]) -> set[int]:
    pids = set()
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::") and any(n.encode() in cmdline for n in names):
            pids.add(int(pid))
    return pids


def test_a_worker_killed_mid_pass_is_retried_and_the_lexicon_is_the_same(
        ray_session, corpus_files, tmp_path, monkeypatch):
    # A corpus big enough that the counting tasks of one worker run for a while.
    big = tmp_path / "big.txt"
    text = "".join(p.read_bytes().decode("gb18030" if p.name == "b.txt" else "utf-8-sig")
                   for p in corpus_files).replace("\r\n", "\n")
    big.write_text(text * 60, encoding="utf-8")
    monkeypatch.setattr("zhtext.io.splits.SPLIT_BYTES", 200_000)
    local = Discoverer(min_count=3).run(big)
    killed: list[int] = []
    done = threading.Event()

    def kill_one() -> None:
        while not done.is_set() and not killed:
            running = _task_pids(("count_task", "span_task", "route_task"))
            if running:
                pid = min(running)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_one)
    watcher.start()
    try:
        got = Discoverer(min_count=3).run(big, engine=RayEngine(workers=1))
    finally:
        done.set()
        watcher.join()
    assert killed, "no task was killed: the passes ended first"
    _same(local, got)
