"""``zhtext pipe --ray``: the records of a local run, part by part, resumed, refused, and whole
after an actor is killed mid-run. All on the session's one local Ray (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_pipeline import TEXTS, models  # noqa: F401  (the tiny tagger and dictionary)

from zhtext.errors import ZhtextError
from zhtext.pipeline import Pipeline
from zhtext.pipeline.parts import read_part

ROOT = Path(__file__).resolve().parents[1]
ACTOR_TITLE = b"ray::MapWorker(MapBatches(PartWriter))"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two files in a folder: a bad byte, an empty line, CRLF, a last line without its newline."""
    root = tmp_path_factory.mktemp("ray-corpus")
    lines = [f"{TEXTS[i % len(TEXTS)]}{i}".encode() for i in range(120)]
    lines[7] = b"\xff\xfebad" + lines[7]
    lines[20] = b""
    lines[33] += b"\r"
    (root / "a.txt").write_bytes(b"\n".join(lines) + b"\n")
    (root / "b.txt").write_bytes(b"\n".join(lines[::-1][:70]))
    return root


@pytest.fixture(scope="module")
def settings(models) -> dict:  # noqa: F811
    # tag.batch_size=1: each text alone through the encoder, so that the scores agree to the bit
    return {"segment": {"dict": models["dict"]},
            "tag": {"model": models["tagger"], "batch_size": 1}}


SEGMENT = {"segment": {"hmm": False}}  # a pipeline without torch: actors start faster


def local_run(corpus, settings, tmp_path_factory) -> list[dict]:
    """The records of local runs over each file, with the file as "source"."""
    nlp = Pipeline(list(settings), **settings)
    out = []
    for path in sorted(corpus.iterdir()):
        target = tmp_path_factory.mktemp("local") / "out.jsonl"
        nlp.run(path, target)
        out += [{"source": str(path), **json.loads(line)}
                for line in target.read_text().splitlines()]
    return out


@pytest.fixture(scope="module")
def local_records(corpus, settings, tmp_path_factory) -> list[dict]:
    return local_run(corpus, settings, tmp_path_factory)


@pytest.fixture(scope="module")
def local_words(corpus, tmp_path_factory) -> list[dict]:
    return local_run(corpus, SEGMENT, tmp_path_factory)


def parts_of(folder: Path) -> list[dict]:
    """Every record of a run's parts, the parts in index order."""
    return [r for name in sorted(os.listdir(folder)) if name.startswith("part-")
            for r in read_part(folder / name)]


def on_ray(settings, corpus, folder, **options):
    nlp_settings = Pipeline.settings_of(list(settings), **settings)
    from zhtext.distributed.pipe import run_on_ray

    return run_on_ray(nlp_settings, [str(corpus)], folder, **options)


@pytest.fixture(scope="module")
def ray_run(ray_session, corpus, settings, tmp_path_factory) -> tuple[Path, object]:
    """A run on Ray through ``Pipeline.run``: its folder and its report."""
    out = tmp_path_factory.mktemp("ray-run") / "out"
    report = Pipeline(["segment", "tag"], **settings).run(str(corpus), out, engine="ray",
                                                           split_bytes=256)
    return out, report


def test_ray_pipe_gives_the_local_records_in_parts(ray_run, corpus, local_records):
    out, report = ray_run
    assert parts_of(out) == local_records  # the parts in order are the input in order
    assert report.parts > 10 and report.docs == len(local_records) == 190
    assert [e[0] for e in report.errors] == [f"{corpus / 'a.txt'}:8"]
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["docs"] == 190 and manifest["errors"] == 1 and manifest["parts"] == report.parts
    assert [f["docs"] for f in manifest["files"]] == [len(read_part(out / f["file"]))
                                                      for f in manifest["files"]]
    bad = next(r for r in parts_of(out) if "error" in r)
    assert bad["line"] == 8 and bad["source"].endswith("a.txt") and "cannot decode" in bad["error"]


def test_a_rerun_resumes_the_same_run_and_refuses_another(ray_run, corpus, settings,
                                                          local_records, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ray_run[0], out)
    parts = sorted(out.glob("part-*"))
    for part in parts[2:5]:
        part.unlink()
    (out / "_SUCCESS").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in parts[:2]}
    again = on_ray(settings, corpus, out, split_bytes=256, workers=1)
    assert (again.parts, again.resumed) == (len(parts), len(parts) - 3)
    assert {p.name: p.stat().st_mtime_ns for p in parts[:2]} == stamps  # kept, not rewritten
    assert parts_of(out) == local_records and (out / "_SUCCESS").exists()

    # Another run into the folder is refused before any work, and leaves it as it was
    before = sorted(os.listdir(out))
    with pytest.raises(ZhtextError, match=r"holds the output of another run \(its settings differ"):
        on_ray({**settings, "segment": {"dict": settings["segment"]["dict"], "hmm": False}},
               corpus, out, split_bytes=256)
    with pytest.raises(ZhtextError, match="its splits, split_bytes differ"):
        on_ray(settings, corpus, out, split_bytes=300)
    assert sorted(os.listdir(out)) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ZhtextError, match="is not empty and holds no zhtext run"):
        on_ray(settings, corpus, tmp_path / "other")


def _actor_pids() -> set[int]:
    pids = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(ACTOR_TITLE):
                pids.add(int(name))
    return pids


def test_an_actor_killed_mid_run_is_replaced_and_nothing_is_lost(ray_session, corpus, local_words,
                                                                 tmp_path):
    out = tmp_path / "out"
    old = _actor_pids()  # (actors of earlier runs may still be on their way out)
    killed: list[tuple[int, int]] = []  # (pid, parts written by then)

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            new = _actor_pids() - old
            written = len(list(out.glob("part-*")))
            if new and written:  # the actors are at work
                pid = min(new)
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, written))
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_one)
    watcher.start()
    report = on_ray(SEGMENT, corpus, out, split_bytes=48)
    watcher.join()
    assert killed, "no actor was killed: the run ended first"
    assert report.parts > 100 > killed[0][1]  # killed with work left
    assert parts_of(out) == local_words
    assert not list(out.glob(".*tmp*"))  # no temporary part left


def test_strict_stops_at_the_first_bad_line_as_a_local_run(ray_session, corpus, tmp_path):
    with pytest.raises(ZhtextError) as local:
        Pipeline(["segment"], **SEGMENT).run(corpus / "a.txt", tmp_path / "a.jsonl", strict=True)
    with pytest.raises(ZhtextError) as ray:
        on_ray(SEGMENT, corpus, tmp_path / "out", split_bytes=4096, strict=True, workers=1)
    first = str(local.value).removesuffix("(stopped by --strict)")
    assert first.startswith(f"{corpus / 'a.txt'}:8: unreadable (cannot decode")
    assert str(ray.value).startswith(first)
    assert "(stopped by --strict; the parts written are kept" in str(ray.value)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_cli_on_ray_and_its_one_line_errors(ray_session, corpus, models,  # noqa: F811
                                            local_records,
                                            tmp_path, monkeypatch, capsys):
    args = ["pipe", str(corpus / "a.txt"), str(corpus / "b.txt"), "--ray", "--steps", "segment,tag",
            "--set", f"segment.dict={models['dict']}", "--set", f"tag.model={models['tagger']}",
            "--set", "tag.batch_size=1", "-q"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", str(tmp_path / "out"), "--format",
                           "parquet", "--workers", "1")
    assert code == 0, err
    assert max(os.listdir(tmp_path / "out")).endswith(".parquet")
    assert parts_of(tmp_path / "out") == local_records  # Parquet parts: the same records
    assert "unreadable: 1 line(s): " + str(corpus / "a.txt") + ":8" in err

    for extra, message in [
        (["-o", str(tmp_path / "x"), str(tmp_path / "missing.txt")], "no such file: "),
        ([], "--ray writes a folder of parts: give -o DIR"),
        (["-o", str(tmp_path / "x"), "--vectors", "v.npy"], "--vectors is for a local run"),
    ]:
        code, out, err = run_cli(monkeypatch, capsys, *args, *extra)
        assert code == 1 and out == "" and err.startswith("zhtext: error: " + message), err
        assert len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(monkeypatch, capsys, "pipe", str(corpus / "a.txt"), "--format",
                           "parquet")
    assert code == 1 and "--format parquet writes the parts of a run on Ray" in err


@pytest.mark.parametrize("case", ["unreachable", "no ray"])
def test_no_cluster_or_no_ray_is_one_line(case, corpus, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["pipe", str(corpus / "a.txt"), "--steps", "segment", "-o", str(tmp_path / "out"),
            "--ray", *([f"127.0.0.1:{port}"] if case == "unreachable" else [])]
    block = "sys.modules['ray'] = None; " if case == "no ray" else ""
    code = (f"import sys; {block}sys.argv = ['zhtext', *{args!r}]; "
            "from zhtext_cli.app import main; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False,
                         env=env, cwd=ROOT)
    assert res.returncode == 1, res.stderr
    expected = (f"zhtext: error: cannot reach the Ray cluster at 127.0.0.1:{port}: "
                if case == "unreachable" else "zhtext: error: Ray is not installed")
    err = res.stderr.strip()
    assert err.startswith(expected) and len(err.splitlines()) == 1, res.stderr
    assert not (tmp_path / "out").exists()  # nothing written
