"""The reliability contract, tried from outside: the CLI run in subprocesses on broken outputs and
under signals. Each case asserts the exit status, the one ``zhtext:`` line (never a traceback)
and the files left behind.

Outputs (``-o``):

| case                                   | expected                                                   |
|----------------------------------------|------------------------------------------------------------|
| a symlink                              | its target is written, the link stays a link               |
| a FIFO                                 | written straight through; it stays a FIFO                  |
| a full device (ENOSPC)                 | exit 1, "cannot write ...: no space left", nothing left    |
| an unwritable place (``/proc/...``)    | exit 1, "cannot write ...", nothing left                   |
| a folder that does not exist           | exit 1, "output folder does not exist"                     |
| a temporary file of a killed run       | removed by the next write of the same output               |
| one 3 MB line to title/embed/tag/pipe  | exit 0 in 300 MB over a short line's; the whole result     |

Signals: SIGTERM and SIGHUP end a command like Ctrl-C: one line, exit 143 / 129, no temporary file,
and a training run saves its resumable checkpoint.

Output handling is never tried on the real ``/dev/stdout`` or ``/dev/full``: as root a broken
writer would replace them with regular files. A FIFO, a symlink and a device node made in a
temporary folder stand in for them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

WORDS = "我爱北京天安门\n今天天气不错\n"
SEGMENTED = "我 爱 北京 天安门\n今天天气 不错\n"


def zhtext(*args: str | Path, cwd: Path, stdin: str | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zhtext", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("zhtext: error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or p.name.startswith(".saving-"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text(WORDS, encoding="utf-8")
    return path


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize("command", [["segment"], ["discover", "--min-len", "2"]])
def test_a_symlink_output_writes_its_target(tmp_path, corpus, command):
    target = tmp_path / "real.txt"
    target.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    res = zhtext(*command, corpus, "-o", link, "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    expected = zhtext(*command, corpus, "-q", cwd=tmp_path).stdout
    assert target.read_text(encoding="utf-8") == expected
    assert leftovers(tmp_path) == []


def test_a_fifo_output_is_written_through(tmp_path, corpus):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    res = zhtext("segment", corpus, "-o", fifo, "-q", cwd=tmp_path)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert received == [SEGMENTED.encode("utf-8")]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    assert leftovers(tmp_path) == []


@pytest.fixture
def full_device(tmp_path: Path) -> Path:
    """A node of the kernel's "full" device (1, 7) in a temporary folder: every write fails with
    ENOSPC. Only root may make one."""
    node = tmp_path / "full"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return node


def test_a_full_device_is_one_error_line(tmp_path, corpus, full_device):
    res = zhtext("segment", corpus, "-o", full_device, "-q", cwd=tmp_path)
    assert_one_error(res, str(full_device), "no space left")
    assert stat.S_ISCHR(os.stat(full_device).st_mode)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", [["segment"], ["discover"]])
def test_an_unwritable_output_is_one_error_line(tmp_path, corpus, command):
    res = zhtext(*command, corpus, "-o", "/proc/zhtext-test/out.txt", "-q", cwd=tmp_path)
    assert_one_error(res, "/proc/zhtext-test")
    res = zhtext(*command, corpus, "-o", "/proc/version", "-q", cwd=tmp_path)
    assert_one_error(res, "cannot write /proc/version")


def test_a_missing_output_folder_is_one_error_line(tmp_path, corpus):
    res = zhtext("segment", corpus, "-o", tmp_path / "no" / "such" / "out.txt", "-q", cwd=tmp_path)
    assert_one_error(res, "output folder does not exist")
    assert not (tmp_path / "no").exists()


def test_a_killed_runs_temporary_file_goes_with_the_next_write(tmp_path, corpus):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.txt.zhtext-{dead}-abcd.tmp"
    live = tmp_path / f".out.txt.zhtext-{os.getpid()}-efgh.tmp"  # a writer still running
    other = tmp_path / f".other.txt.zhtext-{dead}-ijkl.tmp"  # another output's
    for path in (stale, live, other):
        path.write_text("half", encoding="utf-8")
    res = zhtext("segment", corpus, "-o", tmp_path / "out.txt", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == SEGMENTED
    assert not stale.exists() and live.exists() and other.exists()


def test_outputs_get_the_umask_mode(tmp_path, corpus):
    res = subprocess.run(["sh", "-c", f'umask 022 && "{sys.executable}" -m zhtext segment in.txt -o out.txt -q'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "out.txt").st_mode) == 0o644


def test_model_folders_get_the_umask_mode_and_leave_no_temporary_folder(tmp_path):
    from zhtext.neural.modeldir import model_dir_writer

    old = os.umask(0o022)
    try:
        with model_dir_writer(tmp_path / "m") as tmp:
            weights = tmp / "model.safetensors"
            weights.write_bytes(b"x")
            os.chmod(weights, 0o600)  # as transformers leaves its weights
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m" / "model.safetensors").st_mode) == 0o644
    assert leftovers(tmp_path / "m") == []


# ---------------------------------------------------------------- signals


def _stop_a_run(tmp_path: Path, signum: int) -> tuple[subprocess.Popen, str]:
    """Start ``zhtext segment`` on a FIFO that stays open, wait until it has read a line, then
    send ``signum``; return the process and its stderr."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "zhtext", "segment", str(fifo), "-o", "out.txt",
                             "-q"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    with open(fifo, "w", encoding="utf-8") as writer:
        writer.write(WORDS * 1000)
        writer.flush()
        deadline = time.monotonic() + 60
        while not leftovers(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)  # the output's temporary file exists once the command runs
        time.sleep(0.5)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    return proc, err


@pytest.mark.parametrize(("signum", "status", "word"), [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGHUP, 129, "hung up"), (signal.SIGINT, 130, "interrupted"),
])
def test_signals_end_a_command_with_one_line_and_nothing_left(tmp_path, signum, status, word):
    proc, err = _stop_a_run(tmp_path, signum)
    assert proc.returncode == status, err
    assert err.strip() == f"zhtext: {word}", err
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.txt").exists()


def test_a_training_run_saves_its_checkpoint_on_sigterm(tmp_path):
    """The Trainer saves on any KeyboardInterrupt; SIGTERM arrives as one (signals.Terminated)."""
    import torch

    from zhtext.neural.trainer import TrainConfig, Trainer, checkpoint_path
    from zhtext_cli.signals import Terminated

    model = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)

    def batches(epoch: int):
        for i in range(4):
            if (epoch, i) == (1, 2):
                raise Terminated(signal.SIGTERM)
            yield x[2 * i:2 * i + 2]

    class Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return self.inner(batch).pow(2).mean()

    with pytest.raises(Terminated):
        Trainer(Loss(), TrainConfig(output=tmp_path, epochs=3, progress=False), batches, 4).fit()
    saved = torch.load(checkpoint_path(tmp_path), weights_only=False)
    assert saved["loop"]["epoch"] == 1 and saved["loop"]["step"] == 6


# ---------------------------------------------------------------- memory on one long line

LONG_LINE_MB = 3
# The address space a command may take on the long line beyond what it takes on a short one
# (torch and numba map over a GB before reading anything): room for the line's bytes and text,
# its spans and its record. Tokenizing the whole line (title, embed) took ~900 MB more at 3 MB,
# the tagger's whole-line arrays ~500 MB more; the streamed commands take under 150 MB.
LONG_LINE_ROOM_MB = 300
# One thread each (torch, numba, tokenizers) and two malloc arenas: an address space that does
# not grow with the machine's cores.
SMALL_ADDRESS_SPACE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                       "TOKENIZERS_PARALLELISM": "false", "MALLOC_ARENA_MAX": "2"}
# zhtext, then its peak address space in kB as the last line of stderr.
WITH_VM_PEAK = ("import atexit, runpy, sys\n"
                "atexit.register(lambda: sys.stderr.write(next(line for line in open('/proc/self/status')"
                " if line.startswith('VmPeak')).split()[1] + '\\n'))\n"
                "sys.argv[0] = 'zhtext'\n"
                "runpy.run_module('zhtext', run_name='__main__')\n")


def _long_line_bench():
    """benchmarks/long_line_memory.py: its tiny models, its line and its command lines."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "long_line_memory.py"
    spec = importlib.util.spec_from_file_location("long_line_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def long_line(tmp_path_factory):
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to read a process's address space")
    folder = tmp_path_factory.mktemp("long-line")
    bench = _long_line_bench()
    models = bench.build_models(folder)
    text = bench.long_line(LONG_LINE_MB)
    (folder / "line.txt").write_text(text + "\n", encoding="utf-8")
    (folder / "short").mkdir()
    (folder / "short" / "line.txt").write_text("北京是中国的首都。\n", encoding="utf-8")
    return (folder, bench.commands(models, folder / "line.txt", folder),
            bench.commands(models, folder / "short" / "line.txt", folder / "short"), text)


def _zhtext_capped(args: list[str], cwd: Path, megabytes: int | None = None
                   ) -> tuple[subprocess.CompletedProcess, int]:
    """Run zhtext with its address space capped at ``megabytes``; the result and its peak (MB)."""
    def cap() -> None:
        if megabytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))

    res = subprocess.run([sys.executable, "-c", WITH_VM_PEAK, *args], cwd=cwd, capture_output=True,
                         text=True, timeout=900, env={**os.environ, **SMALL_ADDRESS_SPACE},
                         preexec_fn=cap)
    last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    return res, int(last) >> 10 if last.isdigit() else -1


@pytest.mark.parametrize("command", ["title", "embed", "tag", "pipe"])
def test_one_long_line_in_bounded_memory(long_line, command):
    folder, commands, short_commands, text = long_line
    res, baseline = _zhtext_capped(short_commands[command], folder)
    assert res.returncode == 0 and baseline > 0, res.stderr[-3000:]
    res, peak = _zhtext_capped(commands[command], folder, baseline + LONG_LINE_ROOM_MB)
    assert res.returncode == 0, f"{command} on a {LONG_LINE_MB} MB line under {baseline} + " \
                                f"{LONG_LINE_ROOM_MB} MB: {res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr
    if command == "title":
        assert len((folder / "title.txt").read_text(encoding="utf-8").splitlines()) == 1
    elif command == "embed":
        import numpy as np

        vectors = np.load(folder / "embed.npy")
        assert vectors.shape == (1, 32) and np.isfinite(vectors).all() and vectors.any()
    else:
        lines = (folder / f"{command}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 1
        record = json.loads(lines[0])
        assert record["text"] == text
        spans = record["spans"]
        assert len(spans) > len(text) // 100  # the whole line was tagged, to its end
        assert spans[-1]["end"] > len(text) - 1000
        assert all(text[s["start"]:s["end"]] == s["text"] for s in spans[:: max(1, len(spans) // 500)])
        if command == "pipe":
            assert record["title"] and len(record["vector"]) == 32
            assert len(record["problems"]) == 3  # longer than each model's window, noted
    assert leftovers(folder) == []
