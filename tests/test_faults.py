r"""The reliability contract, tried from outside: the CLI run in subprocesses on broken outputs,
broken inputs and under signals. Each case asserts the exit status, the one ``zhtext:`` line (never
a traceback) and the files left behind. The README's "Reliability" section links here.

Outputs (``-o``, ``--vectors``, ``--save-config``, ``--save-whitening``, stdout):

| case                                   | expected                                                   |
|----------------------------------------|------------------------------------------------------------|
| a symlink                              | its target is written, the link stays a link               |
| a FIFO                                 | written straight through; it stays a FIFO                  |
| a full device (ENOSPC)                 | exit 1, "cannot write ...: no space left", nothing left    |
| an unwritable place (``/proc/...``)    | exit 1, "cannot write ...", nothing left                   |
| a folder that does not exist           | exit 1, "output folder does not exist"                     |
| a folder given as the output file      | exit 1, "... is a directory; give a file name"             |
| a read-only folder (not as root)       | exit 1, "cannot write ...: its folder ... is not writable" |
|   (these three for every option that writes a file: ``-o`` of every command, ``pipe --vectors``,  |
|   ``--save-config``, ``embed --save-whitening``; found before a model loads or the input is read) |
| ``pipe --vectors`` a FIFO              | exit 1, "vectors go to a regular file"                     |
| ``--save-config``, ``--save-whitening`` a FIFO | written straight through, exit 0                   |
| stdout a pipe its reader closed (EPIPE)| exit 1, "cannot write <stdout>: broken pipe ...", no       |
|   (every command that prints results)  | "Exception ignored ... BrokenPipeError" at exit            |
| an ``-o`` FIFO its reader closed       | exit 1, "cannot write FIFO: broken pipe ...", still a FIFO |
| stdout a full device (``> /dev/full``) | exit 1, "cannot write <stdout>: no space left ..."         |
| ``train -o`` a file, or an unwritable place | exit 1, one line, nothing made                        |
| a temporary file of a killed run       | removed by the next write of the same output               |
| damaged weights (header intact)        | exit 1, one line naming the model's folder, no output      |
| a model that fails while running       | exit 1, "the model in FOLDER failed while running"         |
| ``train -o`` a folder of other files   | exit 1 unless ``--overwrite``; the folder unchanged        |
| a failed start of ``train``            | exit 1, one line, no output folder made                    |
| ``train --max-seconds`` reached        | exit 0, one line: the checkpoint kept, how to go on        |
| ``--resume``, time budget spent        | exit 1, "the time budget is spent", nothing changed        |
| ``train --keep-checkpoint``            | the completed run's checkpoint stays (else removed)        |
| one 3 MB line to title/embed/tag/pipe  | exit 0 in 300 MB over a short line's; the whole result     |

Signals: SIGTERM and SIGHUP end a command like Ctrl-C: one line, exit 143 / 129, no temporary file,
and a training run saves its resumable checkpoint.

Messages: an error or warning is one physical line however long (a 300-character path), whether
stderr is a file, a pipe or a terminal. ``-q`` (every command takes it) silences progress bars,
spinners and notes (summaries, timings, "saved to"); warnings about the data ("zhtext: warning:",
pipe's bad lines) and errors still show.

Input through ``pipe`` (a line is what lies between two ``\n``, less one ``\r`` before its ``\n``;
a BOM at the start of the file is dropped; every other character, ``\r``, U+2028, U+0085, a BOM in
the middle, is part of its line):

| case                                    | expected                                                  |
|-----------------------------------------|-----------------------------------------------------------|
| random Unicode from every plane, combining marks, line-separator-like characters, ``\r\n``, a  |
| BOM in the middle, NUL past the first MiB: the words of each line concatenate back to it and the |
| number of lines is kept, through ``pipe --steps segment`` and ``segment``                        |
| an empty file                           | exit 0, an empty output                                   |
| a binary file, or NUL in the first MiB  | exit 1, "looks like a binary file", no output             |
| GB18030                                 | exit 0, read as GB18030                                   |
| bad UTF-8 in the middle, or past 1 MiB  | exit 0, that line a record with "error" and a warning;    |
|                                         | ``--strict``: exit 1, "FILE:N: unreadable (...)", no output |
| a missing file, a folder                | exit 1, "no such file", "is a directory", no output       |
| UTF-16 (with or without BOM), UTF-32    | as in the table below                                     |
| one 50 MB line                          | tests/test_long_lines.py                                  |

Option values, results that would be silent zeros, and messages about the input:

| case                                              | expected                                                  |
|---------------------------------------------------|-----------------------------------------------------------|
| a count below its range (``--batch-size 0``,      | exit 2, one line "--OPTION must be at least N, got X",    |
| ``--top -1``, ``--limit -1``, ``--epochs 0`` ...) | the option as typed (``-k`` or ``--neighbours``)          |
| a probability or rate out of range                | exit 2, "--top-p must be more than 0", "--dropout must be |
| (``--top-p 0``, ``--dropout 1.5``, ``--lr 0``)    | less than 1", ...                                         |
| two decoding options that contradict              | exit 2, one line naming both options                      |
| an unknown, missing or valueless option           | exit 2, one line ("no such option", "missing option")     |
| ``evaluate segment`` on empty files               | exit 1, "nothing to score", no zeros printed              |
| STS pairs whose gold scores are all equal         | exit 1, says why (no NaN spearman), before a model loads  |
| a model whose vectors are all equal, or NaN       | exit 1, says why instead of a NaN spearman                |
| ``title`` on an empty input                       | exit 0, one warning line, an empty output                 |
| ``generate --file`` on an empty input             | exit 1, "no prompt"                                       |
| raw text given to a tagger to train or score      | exit 1, "looks like raw text, not labelled data"          |
| tagger data without a single entity               | exit 1, "holds no labels"                                 |
| UTF-16 or UTF-32 input, with or without a BOM     | exit 1, "looks like UTF-16 ...; give --encoding utf-16-le"|
|   (Chinese, English, accented Latin, Cyrillic,    |   (never "a binary file")                                 |
|   kana, emoji: by where the NUL bytes fall)       |                                                           |
| ``--encoding utf-16`` on a file without a BOM     | exit 1, "has no UTF-16 byte-order mark; give ... -le"     |
| bad bytes past the first megabyte                 | exit 1, the offset and "(use --encoding to name ...)"     |
| a missing input to a model command                | exit 1, "no such file", before the model loads            |
| a folder given as a data file (``--train .``)     | exit 1, "... is a directory, not a text file"             |
| a bad line in a ``--user-dict`` (a tab inside it, | exit 1, "FILE:LINE: ..." naming the mistake, no output    |
| a count ``3.5``, a tag ``NR``, bad bytes) to      |   file left                                               |
| ``segment`` or ``keywords``                       |                                                           |

Output handling is never tried on the real ``/dev/stdout`` or ``/dev/full``: as root a broken
writer would replace them with regular files. A FIFO, a symlink and a device node made in a
temporary folder stand in for them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import sigint_as_usual

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


# Every option that writes a file, and the arguments that reach it; the model named does not
# exist: the output is checked first. (The command, where the path goes.)
WRITERS = [
    (["segment", "in.txt", "-o"], "-o"),
    (["discover", "in.txt", "-o"], "-o"),
    (["tag", "in.txt", "-m", "no-model", "-o"], "-o"),
    (["title", "in.txt", "-m", "no-model", "-o"], "-o"),
    (["generate", "北京", "-m", "no-model", "-o"], "-o"),
    (["embed", "in.txt", "-m", "no-model", "-o"], "-o"),
    (["embed", "in.txt", "-m", "no-model", "--whiten", "--save-whitening"], "--save-whitening"),
    (["similar", "北京", "--index", "no.npy", "--texts", "in.txt", "-o"], "-o"),
    (["pipe", "in.txt", "--steps", "segment", "-o"], "-o"),
    (["pipe", "in.txt", "--steps", "embed", "--set", "embed.model=no-model", "--vectors"], "--vectors"),
    (["pipe", "in.txt", "--steps", "segment", "--save-config"], "--save-config"),
]


@pytest.mark.parametrize("args", [args for args, _ in WRITERS], ids=[f"{a[0]} {o}" for a, o in WRITERS])
def test_every_option_that_writes_a_file_fails_in_one_line_before_the_work(tmp_path, corpus, args):
    """A missing folder, for every option that writes; a folder and a read-only folder too, for
    ``--save-config`` and ``--save-whitening`` (the same check, zhtext.io.writing.check_output)."""
    kinds = [("no" + os.sep + "out.x", "output folder does not exist: no")]
    if args[-1] in ("--save-config", "--save-whitening"):
        (tmp_path / "folder").mkdir()
        kinds.append(("folder", "folder is a directory; give a file name for the output"))
        if os.geteuid() != 0:  # root writes into a read-only folder all the same
            (tmp_path / "locked").mkdir(mode=0o555)
            kinds.append(("locked" + os.sep + "out.x", "its folder locked is not writable"))
    before = sorted(p.name for p in tmp_path.iterdir())
    for path, message in kinds:
        assert_one_error(zhtext(*args, path, cwd=tmp_path), message)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def _read_fifo(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    return reader, received


def test_save_config_and_save_whitening_write_through_a_fifo(tmp_path, corpus, tiny_models):
    fifo = tmp_path / "settings.fifo"
    os.mkfifo(fifo)
    reader, received = _read_fifo(fifo)
    res = zhtext("pipe", corpus, "--steps", "segment", "--save-config", fifo, "-o", "out.jsonl", "-q",
                 cwd=tmp_path)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert b'steps = ["segment"]' in received[0]
    reader, received = _read_fifo(fifo)
    res = zhtext("embed", corpus, "-m", tiny_models["encoder"], "--whiten", "--dim", "1",
                 "--save-whitening", fifo, "-o", "vectors.npy", "-q", cwd=tmp_path)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    import io

    import numpy as np

    saved = np.load(io.BytesIO(received[0]))
    assert saved["mu"].shape == (32,) and saved["W"].shape[0] == 32
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and leftovers(tmp_path) == []


def test_vectors_to_a_fifo_are_refused_in_one_line(tmp_path, corpus, tiny_models):
    """The .npy of streamed vectors gets its row count last, by seeking back: not through a FIFO."""
    fifo = tmp_path / "vectors.fifo"
    os.mkfifo(fifo)
    res = zhtext("pipe", corpus, "--steps", "embed", "--set", f"embed.model={tiny_models['encoder']}",
                 "--vectors", fifo, "-o", "out.jsonl", cwd=tmp_path)
    assert_one_error(res, f"cannot write {fifo}: vectors go to a regular file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "vectors.fifo"]


# ---------------------------------------------------------------- a reader that goes away (EPIPE)

BIG = WORDS * 50_000  # 1.1 MB of output: far more than a pipe holds


def _closed_early(args: list, cwd: Path, read_first: bool) -> tuple[int, str]:
    """Run zhtext with stdout a pipe whose reading end is closed (after one line if
    ``read_first``); its status and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "zhtext", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if read_first:
        assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8")
    return proc.wait(timeout=120), err


def _assert_broken_pipe(status: int, err: str, path: str = "<stdout>") -> None:
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert (status, err) == (1, f"zhtext: error: cannot write {path}: broken pipe (its reader closed it)\n")


@pytest.mark.parametrize(("args", "read_first"), [
    (["segment", "big.txt"], True),
    (["pipe", "big.txt", "--steps", "segment"], True),
    (["discover", "in.txt"], False),
    (["evaluate", "segment", "--gold", "seg.txt", "--pred", "seg.txt"], False),
])
def test_a_closed_stdout_pipe_is_one_error_line(tmp_path, corpus, args, read_first):
    """``zhtext segment big.txt | head -1``: the reader goes after one line (or before any)."""
    (tmp_path / "big.txt").write_text(BIG, encoding="utf-8")
    (tmp_path / "seg.txt").write_text(SEGMENTED, encoding="utf-8")
    _assert_broken_pipe(*_closed_early([*args, "-q"], tmp_path, read_first))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("model", "args"), [
    ("tagger", ["tag", "in.txt"]),
    ("title", ["title", "in.txt", "--lines"]),
    ("gpt", ["generate", "北京", "--max-new-tokens", "4"]),  # streamed piece by piece
    ("encoder", ["embed", "in.txt", "--format", "npy"]),  # binary, through np.save
], ids=["tag", "title", "generate", "embed"])
def test_model_commands_on_a_closed_stdout_pipe_are_one_error_line(tmp_path, corpus, tiny_models, model, args):
    _assert_broken_pipe(*_closed_early([*args, "-m", tiny_models[model], "-q"], tmp_path, read_first=False))


def test_a_fifo_output_whose_reader_goes_is_one_error_line(tmp_path):
    (tmp_path / "big.txt").write_text(BIG, encoding="utf-8")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)

    def read_one_line() -> None:
        with open(fifo, "rb") as reader:
            reader.readline()

    reader = threading.Thread(target=read_one_line, daemon=True)
    reader.start()
    res = zhtext("segment", "big.txt", "-o", fifo, "-q", cwd=tmp_path)
    reader.join(timeout=60)
    _assert_broken_pipe(res.returncode, res.stderr, str(fifo))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and leftovers(tmp_path) == []


def test_a_full_stdout_is_one_error_line(tmp_path, corpus, full_device):
    """``zhtext segment in.txt > /dev/full``, and a result printed at the end (evaluate)."""
    (tmp_path / "seg.txt").write_text(SEGMENTED, encoding="utf-8")
    for args in (["segment", corpus], ["evaluate", "segment", "--gold", "seg.txt", "--pred", "seg.txt"]):
        with open(full_device, "w") as full:
            res = subprocess.run([sys.executable, "-m", "zhtext", *map(str, args), "-q"], cwd=tmp_path,
                                 stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        assert "Exception ignored" not in res.stderr
        assert_one_error(res, "cannot write <stdout>: no space left on the device")


# ---------------------------------------------------------------- signals


def _stop_a_run(tmp_path: Path, signum: int) -> tuple[subprocess.Popen, str]:
    """Start ``zhtext segment`` on a FIFO that stays open, wait until it has read a line, then
    send ``signum``; return the process and its stderr."""
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "zhtext", "segment", str(fifo), "-o", "out.txt",
                             "-q"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_usual)
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
    from zhtext_cli.signals import Terminated

    from zhtext.neural.trainer import TrainConfig, Trainer, checkpoint_path

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


# ---------------------------------------------------------------- option values, silent zeros, input messages


def assert_usage_error(res: subprocess.CompletedProcess, line: str) -> None:
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and res.stderr == f"zhtext: error: {line}\n", res.stderr


# Every range is declared once, on the option; these are refused before anything is read (the
# files named need not exist). (arguments, the one line after "zhtext: error: ").
MODEL = ["-m", "no-model"]
TRAIN = ["--train", "t.txt", "-o", "out", "--from-scratch"]
BAD_OPTION_VALUES = [
    (["tag", "in.txt", *MODEL, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["tag", "in.txt", *MODEL, "--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
    (["tag", "in.txt", *MODEL, "--n-best", "0"], "--n-best must be at least 1, got 0"),
    (["discover", "in.txt", "--top", "-1"], "--top must be at least 1, got -1"),
    (["discover", "in.txt", "--max-n", "5"], "--max-n must be at most 4, got 5"),
    (["discover", "in.txt", "--min-count", "0"], "--min-count must be at least 1, got 0"),
    (["discover", "in.txt", "--iterations", "-1"], "--iterations must be at least 0, got -1"),
    (["discover", "in.txt", "--min-len", "0"], "--min-len must be at least 1, got 0"),
    (["evaluate", "gpt", *MODEL, "--data", "d.txt", "--limit", "-1"], "--limit must be at least 1, got -1"),
    (["evaluate", "gpt", *MODEL, "--data", "d.txt", "--heldout-every", "1"],
     "--heldout-every must be at least 2, got 1"),
    (["evaluate", "title", *MODEL, "--data", "d.tsv", "--limit", "-1"], "--limit must be at least 1, got -1"),
    (["train", "title", *TRAIN, "--dev-limit", "-1"], "--dev-limit must be at least 1, got -1"),
    (["train", "title", *TRAIN, "--max-source-len", "0"], "--max-source-len must be at least 1, got 0"),
    (["train", "title", *TRAIN, "--max-target-len", "0"], "--max-target-len must be at least 1, got 0"),
    (["train", "tagger", *TRAIN, "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["train", "tagger", *TRAIN, "--dropout", "1.5"], "--dropout must be less than 1, got 1.5"),
    (["train", "tagger", *TRAIN, "--dropout", "-0.1"], "--dropout must be at least 0, got -0.1"),
    (["train", "tagger", *TRAIN, "--head-lr", "0"], "--head-lr must be more than 0, got 0"),
    (["train", "tagger", *TRAIN, "--max-len", "2"], "--max-len must be at least 3, got 2"),
    (["train", "tagger", *TRAIN, "--ema", "1"], "--ema must be less than 1, got 1"),
    (["train", "title", *TRAIN, "--ema", "-0.5"], "--ema must be at least 0, got -0.5"),
    (["train", "gpt", *TRAIN, "--block-size", "0"], "--block-size must be at least 2, got 0"),
    (["train", "gpt", *TRAIN, "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
    (["train", "gpt", *TRAIN, "--max-steps", "0"], "--max-steps must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--grad-accum", "0"], "--grad-accum must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--eval-every", "0"], "--eval-every must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--layers", "0"], "--layers must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--hidden", "0"], "--hidden must be at least 1, got 0"),
    (["train", "gpt", *TRAIN, "--max-seconds", "-5"], "--max-seconds must be at least 0, got -5"),
    (["train", "gpt", *TRAIN, "--lr", "-1e-3"], "--lr must be more than 0, got -0.001"),
    (["train", "gpt", *TRAIN, "--seed", "-1"], "--seed must be at least 0, got -1"),
    (["train", "gpt", *TRAIN, "--max-vocab", "2"], "--max-vocab must be at least 5, got 2"),
    (["train", "embed", *MODEL, "--train", "t.txt", "-o", "out", "--dim", "0"], "--dim must be at least 1, got 0"),
    (["embed", "in.txt", *MODEL, "--max-len", "1"], "--max-len must be at least 2, got 1"),
    (["similar", "q", "--index", "i.npy", "--texts", "t.txt", "-k", "0"], "-k must be at least 1, got 0"),
    (["similar", "q", "--index", "i.npy", "--texts", "t.txt", "--neighbours=-2"],
     "--neighbours must be at least 1, got -2"),
    (["generate", "x", *MODEL, "--max-new-tokens", "-1"], "--max-new-tokens must be at least 0, got -1"),
    (["generate", "x", *MODEL, "--min-new-tokens", "-1"], "--min-new-tokens must be at least 0, got -1"),
    (["generate", "x", *MODEL, "--no-repeat-ngram", "-1"], "--no-repeat-ngram must be at least 0, got -1"),
    (["generate", "x", *MODEL, "--top-k", "-1"], "--top-k must be at least 0, got -1"),
    (["generate", "x", *MODEL, "--top-p", "0"], "--top-p must be more than 0, got 0"),
    (["generate", "x", *MODEL, "--top-p", "1.5"], "--top-p must be at most 1, got 1.5"),
    (["generate", "x", *MODEL, "--temperature", "0"], "--temperature must be more than 0, got 0"),
    (["generate", "x", *MODEL, "--repetition-penalty", "0"], "--repetition-penalty must be more than 0, got 0"),
    (["generate", "x", *MODEL, "--beam", "0"], "--beam must be at least 1, got 0"),
    (["generate", "x", *MODEL, "--num", "0"], "--num must be at least 1, got 0"),
    (["generate", "x", *MODEL, "--seed", "-3"], "--seed must be at least 0, got -3"),
    (["title", "in.txt", *MODEL, "--temperature", "-1"], "--temperature must be more than 0, got -1"),
    (["title", "in.txt", *MODEL, "--min-new-tokens", "40"], "--min-new-tokens (40) cannot exceed --max-new-tokens (32)"),
    (["generate", "x", *MODEL, "--num", "3", "--beam", "2"],
     "--num (3) cannot exceed --beam (2): beam search returns the best of its beams"),
    (["generate", "x", *MODEL, "--sample", "--beam", "3"], "--sample and --beam do not mix: choose one"),
    (["pipe", "in.txt", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["tag", "in.txt", *MODEL, "--batch-size", "many"], "--batch-size must be a whole number, got 'many'"),
    (["tag", "in.txt", *MODEL, "--format", "xml"], "--format must be one of jsonl, conll, got 'xml'"),
    (["evaluate", "tagger", *MODEL, "--data", "d.txt", "--input-format", "csv"],
     "--input-format must be one of auto, conll, cluener, segmented, got 'csv'"),
    (["tag", "in.txt"], "missing option -m/--model"),
    (["tag", "in.txt", *MODEL, "--nbest", "2"], "no such option: --nbest (did you mean --n-best?)"),
    (["tag", "in.txt", *MODEL, "--n-best"], "option '--n-best' requires an argument"),
]


@pytest.mark.parametrize(("args", "line"), BAD_OPTION_VALUES, ids=[" ".join(a) for a, _ in BAD_OPTION_VALUES])
def test_a_bad_option_value_is_one_line_naming_the_option_exit_2(tmp_path, args, line):
    res = zhtext(*args, cwd=tmp_path)
    assert_usage_error(res, line)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_evaluate_segment_on_empty_files_is_an_error_not_zeros(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n", encoding="utf-8")
    assert_one_error(zhtext("evaluate", "segment", "--gold", empty, "--pred", empty, cwd=tmp_path),
                     "nothing to score: the gold is empty")
    assert_one_error(zhtext("evaluate", "segment", "--gold", blank, "--pred", blank, "--json", cwd=tmp_path),
                     "nothing to score: the gold has no words")
    assert_one_error(zhtext("evaluate", "segment", "--gold", blank, "--dict", "jieba", cwd=tmp_path),
                     "nothing to score")
    res = zhtext("evaluate", "segment", "--gold", blank, "--pred", empty, cwd=tmp_path)
    assert_one_error(res, "the gold has 2 lines but the segmentation has 0")
    assert res.stdout == ""


def test_constant_sts_gold_is_an_error_naming_why_before_the_model_loads(tmp_path):
    data = tmp_path / "sts.tsv"
    data.write_text("今天天气好\t天气不错\t3\n我爱北京\t北京很大\t3.0\n", encoding="utf-8")
    res = zhtext("evaluate", "embed", "-m", "no-model", "--data", data, cwd=tmp_path)
    assert_one_error(res, "every pair has the gold score 3; a rank correlation needs at least two different scores")


@pytest.mark.parametrize(("weights", "why"), [(0.0, "every pair has the same cosine"), (math.nan, "NaN")])
def test_a_model_that_cannot_rank_is_an_error_not_a_nan_spearman(tmp_path, weights, why):
    import torch
    from transformers import BertModel

    from zhtext.errors import ZhtextError
    from zhtext.neural.scratch import (
        build_char_vocab,
        char_tokenizer,
        small_bert_config,
    )
    from zhtext.tasks.embed import Embedder

    pairs = [("今天天气好", "天气不错", 4.0), ("我爱北京", "北京很大", 2.0), ("你好", "再见", 0.0)]
    vocab = build_char_vocab([s for pair in pairs for s in pair[:2]])
    char_tokenizer(vocab, tmp_path)
    model = BertModel(small_bert_config(len(vocab), layers=1, hidden=16, heads=2))
    model.save_pretrained(tmp_path)
    embedder = Embedder.load(str(tmp_path), pooling="cls")
    if math.isnan(weights):
        # A folder with NaN weights is refused on loading, before any vector is made ...
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(weights)
        model.save_pretrained(tmp_path / "nan")
        char_tokenizer(vocab, tmp_path / "nan")
        with pytest.raises(ZhtextError, match="its weights are damaged"):
            Embedder.load(str(tmp_path / "nan"), pooling="cls")
    with torch.no_grad():  # ... and vectors that still come out NaN or all equal cannot rank
        for param in embedder.model.parameters():
            param.fill_(weights)  # zero: one vector for every sentence; NaN: NaN vectors
    with pytest.raises(ZhtextError, match=why):
        embedder.evaluate(pairs)


def test_title_on_an_empty_input_warns_and_writes_an_empty_output(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    out = tmp_path / "titles.txt"
    res = zhtext("title", empty, "-m", "no-model", "-o", out, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == f"zhtext: warning: no article in {empty}: nothing to title\n"
    assert out.read_text(encoding="utf-8") == "" and leftovers(tmp_path) == []
    res = zhtext("title", "--lines", "-m", "no-model", cwd=tmp_path, stdin="\n \n")
    assert (res.returncode, res.stdout) == (0, "")
    assert res.stderr == "zhtext: warning: no articles in <stdin>: nothing to title\n"
    assert_one_error(zhtext("generate", "--file", empty, "-m", "no-model", cwd=tmp_path), "no prompt")


def test_raw_text_is_refused_as_tagger_data(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("我爱北京天安门\n今天天气不错\n", encoding="utf-8")
    labelled = tmp_path / "train.txt"
    labelled.write_text("我 爱 北京\n今天 天气 不错\n", encoding="utf-8")
    out = tmp_path / "model"
    expected = "looks like raw text, not labelled data"
    assert_one_error(zhtext("train", "tagger", "--train", raw, "--from-scratch", "-o", out, "-q", cwd=tmp_path),
                     str(raw), expected)
    assert_one_error(zhtext("train", "tagger", "--train", labelled, "--dev", raw, "--from-scratch", "-o", out,
                            "-q", cwd=tmp_path), str(raw), expected)
    # The data is read before the model loads: no model is needed to be told.
    assert_one_error(zhtext("evaluate", "tagger", "-m", "no-model", "--data", raw, cwd=tmp_path), expected)
    assert_one_error(zhtext("evaluate", "tagger", "-m", "no-model", "--data", raw, "--input-format", "segmented",
                            cwd=tmp_path), expected)
    # A space here and there does not make running text a segmented corpus.
    raw.write_text("我爱北京天安门，天安门上太阳升 伟大领袖毛主席\n", encoding="utf-8")
    assert_one_error(zhtext("evaluate", "tagger", "-m", "no-model", "--data", raw, cwd=tmp_path), expected)
    assert_one_error(zhtext("train", "tagger", "--train", tmp_path, "--from-scratch", "-o", out, cwd=tmp_path),
                     "is a directory, not a text file")
    # Records or CoNLL lines without a single entity are no labels either.
    for name, body in [("none.json", '{"text": "我爱北京"}\n{"text": "你好", "label": {}}\n'),
                       ("none.conll", "我 O\n爱 O\n\n北 O\n")]:
        (tmp_path / name).write_text(body, encoding="utf-8")
        assert_one_error(zhtext("evaluate", "tagger", "-m", "no-model", "--data", tmp_path / name, cwd=tmp_path),
                         f"{tmp_path / name} holds no labels: not one entity in its 2 example(s)")


@pytest.mark.parametrize(
    ("codec", "named"),
    [("utf-16", "looks like UTF-16; give --encoding utf-16"),
     ("utf-16-le", "looks like UTF-16 (little-endian, no byte-order mark); give --encoding utf-16-le"),
     ("utf-32-be", "looks like UTF-32 (big-endian, no byte-order mark); give --encoding utf-32-be")],
)
@pytest.mark.parametrize("command", [["segment"], ["discover"], ["pipe", "--steps", "segment"]])
def test_utf16_input_is_named_with_the_encoding_to_give(tmp_path, codec, named, command):
    path = tmp_path / "wide.txt"
    path.write_bytes(WORDS.encode(codec))
    assert_one_error(zhtext(*command, path, "-o", tmp_path / "out.txt", cwd=tmp_path), f"{path} {named}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.txt"]


# Text of other scripts than Chinese: their UTF-16 has NUL bytes where Latin-1 characters have
# their high byte, and was once called "a binary file".
WIDE_TEXTS = {
    "English": "The quick brown fox jumps over the lazy dog.\nSecond line, 2 words.\n",
    "accented": "Café, résumé, naïve — «déjà vu» à Zürich; ½ €5.\n",
    "Cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю.\n",
    "Greek": "Γειά σου Κόσμε\n",
    "Hangul": "대한민국의 수도는 서울입니다\n",
    "kana": "いろはにほへと ちりぬるを わかよたれそ つねならむ。\nカタカナ 2 行目\n",
    "emoji": "ok 😀 👍🏽 🎉 fine\n",
    "Arabic": "مرحبا بالعالم، كيف حالك؟\n",
}
WIDE_CODECS = {"utf-16-le": "UTF-16 (little-endian", "utf-16-be": "UTF-16 (big-endian",
               "utf-32-le": "UTF-32 (little-endian", "utf-32-be": "UTF-32 (big-endian",
               "utf-16": "UTF-16; give --encoding utf-16", "utf-32": "UTF-32; give --encoding utf-32"}


@pytest.mark.parametrize("codec", WIDE_CODECS)
@pytest.mark.parametrize("script", WIDE_TEXTS)
def test_wide_text_of_any_script_is_named_not_called_binary(script, codec):
    from zhtext.errors import ZhtextError
    from zhtext.io.reading import detect_encoding

    with pytest.raises(ZhtextError) as info:
        detect_encoding(WIDE_TEXTS[script].encode(codec), "in.txt")
    assert str(info.value).startswith(f"in.txt looks like {WIDE_CODECS[codec]}"), info.value
    assert str(info.value).endswith(f"; give --encoding {codec}")


def test_binary_data_is_still_binary_not_utf16():
    """What is not text under any byte order keeps its message: an ELF header, every byte value,
    ASCII strings with a NUL here and there (a binary's string table)."""
    from zhtext.errors import ZhtextError
    from zhtext.io.reading import detect_encoding

    strings = b"".join(b"/usr/lib/locale/%d.so\x00usage: %s [OPTION]... [FILE]...\x00" % (i, b"ls")
                       for i in range(60))
    for sample in (b"\x7fELF\x02\x01\x01\x00" + bytes(56) + bytes(range(256)) * 8, bytes(range(256)) * 16,
                   strings[:4096]):
        with pytest.raises(ZhtextError, match="looks like a binary file, not text"):
            detect_encoding(sample, "in.bin")


@pytest.mark.parametrize(("script", "codec", "command"), [
    ("accented", "utf-16-le", ["segment"]), ("Cyrillic", "utf-16-be", ["pipe", "--steps", "segment"]),
    ("emoji", "utf-32-le", ["discover"]),
])
def test_wide_text_of_any_script_gets_the_encoding_hint_from_the_cli(tmp_path, script, codec, command):
    path = tmp_path / "wide.txt"
    path.write_bytes(WIDE_TEXTS[script].encode(codec))
    res = zhtext(*command, path, "-o", tmp_path / "out.txt", cwd=tmp_path)
    assert_one_error(res, f"{path} looks like {WIDE_CODECS[codec]}", f"give --encoding {codec}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.txt"]
    # and the hint is right: with it, the text is read
    res = zhtext("segment", path, "--encoding", codec, "--sep", "|", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.replace("|", "") == WIDE_TEXTS[script]


def test_utf16_named_without_a_byte_order_mark_is_one_line(tmp_path):
    path = tmp_path / "le.txt"
    path.write_bytes(WORDS.encode("utf-16-le"))
    for command in (["discover"], ["segment"]):
        res = zhtext(*command, path, "--encoding", "utf-16", "-o", tmp_path / "out.txt", cwd=tmp_path)
        assert_one_error(res, "has no UTF-16 byte-order mark; give --encoding utf-16-le")
    res = zhtext("segment", path, "--encoding", "utf-16-le", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, SEGMENTED)


def test_bad_bytes_past_the_first_megabyte_keep_the_hint(tmp_path):
    good = WORDS.encode("utf-8") * (2 * (1 << 20) // len(WORDS.encode("utf-8")))
    path = tmp_path / "late.txt"
    path.write_bytes(good + b"\xff\xfe\n")
    res = zhtext("segment", path, "-o", tmp_path / "out.txt", "-q", cwd=tmp_path)
    assert_one_error(res, f"cannot decode byte at offset {len(good)} as utf-8 (use --encoding to name the right one)")
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.txt").exists()


# ---------------------------------------------------------------- any text through pipe and segment

# Characters that other tools take for line ends (str.splitlines does), and a BOM: inside a line
# here, since only "\n" ends one.
LINE_BREAK_LIKE = ["\u2028", "\u2029", "\u0085", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\ufeff"]
WORD_SEP = "\u2063"  # (invisible separator) between the words segment prints; never generated


def _random_line(rng, nul: bool) -> str:
    """Up to 40 characters: Chinese, ASCII, combining marks and joiners, line-break-like
    characters, spaces, and code points from every plane (unassigned and private ones included)."""
    chars = []
    for _ in range(rng.randrange(40)):
        kind = rng.random()
        if kind < 0.35:
            cp = rng.randrange(0x4E00, 0x9FA6)
        elif kind < 0.5:
            cp = rng.randrange(0x20, 0x7F)
        elif kind < 0.6:
            cp = rng.choice([0x300, 0x301, 0x308, 0x20DD, 0xFE0F, 0x200D])
        elif kind < 0.7:
            chars.append(rng.choice(LINE_BREAK_LIKE + ["\x00"] * nul))
            continue
        elif kind < 0.75:
            cp = rng.choice([0x20, 0x3000, 0xA0, 0x09])
        else:
            cp = rng.randrange(0xA0, 0x110000)
        chars.append(chr(0xE000 if 0xD800 <= cp < 0xE000 else cp))  # UTF-8 holds no lone surrogate
    return "".join(chars).replace(WORD_SEP, "")


def test_random_unicode_round_trips_through_pipe_and_segment(tmp_path):
    """Each line's words concatenate back to the line, and there are as many lines out as in.

    A line is what lies between two "\\n" (or the end of the file), less one "\\r" before its
    "\\n"; the file's BOM is dropped. NUL past the first MiB is text like any other character (in
    the first MiB it makes a binary file: test_bad_inputs_through_pipe)."""
    import random

    rng = random.Random(13)
    head = [_random_line(rng, nul=False) for _ in range(300)]
    filler = ["我爱北京天安门，今天天气不错。" * 20] * (1100 * 1024 // 900)  # past the first MiB
    tail = [_random_line(rng, nul=True) for _ in range(300)]
    ends = ["\r\n" if rng.random() < 0.3 else "\n" for _ in range(len(head) + len(filler) + len(tail))]
    raw = "".join(line + end for line, end in zip(head + filler + tail, ends)).removesuffix("\n")
    (tmp_path / "any.txt").write_bytes(("\ufeff" + raw).encode("utf-8"))
    expected = [line.removesuffix("\r") for line in raw.split("\n")]
    assert "\x00" in raw[len(raw) // 2 :] and "\u2028" in raw and "\ufeff" in raw

    res = zhtext("pipe", "any.txt", "--steps", "segment", "-o", "out.jsonl", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in
               (tmp_path / "out.jsonl").read_bytes().decode("utf-8").split("\n")[:-1]]  # not splitlines
    assert [r["line"] for r in records] == list(range(1, len(expected) + 1))
    assert [r["text"] for r in records] == expected
    assert ["".join(r["words"]) for r in records] == expected
    assert "Traceback" not in res.stderr

    res = zhtext("segment", "any.txt", "--sep", WORD_SEP, "-o", "out.txt", "-q", cwd=tmp_path)
    assert (res.returncode, res.stderr) == (0, "")
    lines = (tmp_path / "out.txt").read_bytes().decode("utf-8").split("\n")
    assert lines.pop() == ""
    assert [line.replace(WORD_SEP, "") for line in lines] == expected


LATE = WORDS.encode("utf-8") * (2 * (1 << 20) // len(WORDS.encode("utf-8")))  # 2 MB of good lines


@pytest.mark.parametrize(("kind", "data", "status", "message"), [
    ("empty file", b"", 0, None),
    ("binary", bytes(range(256)) * 16, 1, "looks like a binary file, not text"),
    ("NUL in the first MiB", WORDS.encode("utf-8") + b"\x00\n" + WORDS.encode("utf-8"), 1,
     "looks like a binary file, not text"),
    ("GB18030", WORDS.encode("gb18030"), 0, None),
    ("bad UTF-8 in the middle", WORDS.encode("utf-8") + b"\xff\xfe\n" + WORDS.encode("utf-8"), 0,
     f"cannot decode byte at offset {len(WORDS.encode('utf-8'))} as utf-8"),
    ("bad UTF-8 past the first MiB", LATE + b"\xff\xfe\n", 0,
     f"cannot decode byte at offset {len(LATE)} as utf-8"),
    ("a missing file", None, 1, "no such file: "),
    ("a folder", "folder", 1, "is a directory, not a text file"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_inputs_through_pipe(tmp_path, kind, data, status, message):
    """(UTF-16 and UTF-32, with and without a BOM: test_utf16_input_is_named_with_the_encoding_to_give;
    one 50 MB line: tests/test_long_lines.py.)"""
    path = tmp_path / "in.txt"
    if data == "folder":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    res = zhtext("pipe", path, "--steps", "segment", "-o", "out.jsonl", cwd=tmp_path)
    if status == 1:
        assert_one_error(res, message)
        assert not (tmp_path / "out.jsonl").exists() and leftovers(tmp_path) == []
        return
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = data.decode("gb18030" if kind == "GB18030" else "utf-8", "replace").splitlines()
    assert [r["text"] for r in records if "error" not in r] == [t for t in texts if "\ufffd" not in t]
    if message is None:
        assert "warning" not in res.stderr
        return
    # A line that cannot be read is kept, as a record saying why, and named in a warning; with
    # --strict the run stops there and writes nothing.
    bad = [r for r in records if "error" in r]
    assert [r["error"] for r in bad] == [message] and bad[0]["text"] == ""
    assert "zhtext: warning: 1 bad line(s), none dropped" in res.stderr
    assert f"  unreadable: 1 line(s): {bad[0]['line']}" in res.stderr.splitlines()
    (tmp_path / "out.jsonl").unlink()
    res = zhtext("pipe", path, "--steps", "segment", "-o", "out.jsonl", "--strict", "-q", cwd=tmp_path)
    assert_one_error(res, f"{path}:{bad[0]['line']}: unreadable ({message}) (stopped by --strict)")
    assert not (tmp_path / "out.jsonl").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- one line per message, and -q

LONG = ("d" * 120, "e" * 120, "f" * 60 + ".txt")  # a path of 300 characters and more


def _long_path(tmp_path: Path) -> Path:
    path = tmp_path.joinpath(*LONG)
    path.parent.mkdir(parents=True)
    return path


def test_messages_are_one_line_however_long_whatever_stderr_is(tmp_path):
    """Rich wraps at 80 columns when stderr is not a terminal: never a message (one console,
    zhtext.io.progress.stderr_console). A file, a pipe and a terminal (a pty) as stderr."""
    config = _long_path(tmp_path).with_name("old.toml")  # a pipe config in zhtext 0.1's flat layout
    (tmp_path / "words.dict").write_text("北京 100\n天安门 50\n", encoding="utf-8")
    config.write_text(f'steps = ["segment"]\ndict = "{tmp_path / "words.dict"}"\n', encoding="utf-8")
    args = [sys.executable, "-m", "zhtext", "pipe", "in.txt", "--config", str(config), "-o", "out.jsonl", "-q"]
    (tmp_path / "in.txt").write_text(WORDS, encoding="utf-8")
    warning = (f"zhtext: warning: {config}: flat settings are the old layout, read for one more release; "
               "give each step's settings in its table (dict -> segment.dict)")
    assert len(warning) > 300

    res = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (res.returncode, res.stderr) == (0, warning + "\n")
    with open(tmp_path / "err.txt", "w", encoding="utf-8") as err:
        subprocess.run(args, cwd=tmp_path, stderr=err, timeout=120, check=True)
    assert (tmp_path / "err.txt").read_text(encoding="utf-8") == warning + "\n"
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=follower)
    os.close(follower)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed its end
        while chunk := os.read(leader, 4096):
            seen += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    assert seen.decode("utf-8").replace("\r\n", "\n") == warning + "\n"  # whole: the terminal wraps it

    # A note (without -q) and an error: one line each as well.
    saved = config.with_name("settings.toml")
    res = zhtext("pipe", "in.txt", "--steps", "segment", "--save-config", saved, "-o", "out.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"settings saved to {saved}\n" in res.stderr
    res = zhtext("segment", config.with_name("missing.txt"), cwd=tmp_path)
    assert_one_error(res, f"no such file: {config.with_name('missing.txt')}")


def test_quiet_silences_notes_and_bars_not_warnings(tmp_path):
    """One rule for every command (cli/base.py: QuietOpt; tests/test_shape.py checks that each
    takes -q): notes go, warnings about the data stay."""
    (tmp_path / "gold.txt").write_text(SEGMENTED, encoding="utf-8")
    (tmp_path / "pred.txt").write_text("我 爱 北京 天安门\n今天 天 不错\n", encoding="utf-8")  # a character lost
    evaluate = ("evaluate", "segment", "--gold", "gold.txt", "--pred", "pred.txt")
    warning = "zhtext: warning: 1 line(s) differ from the gold in their characters and count as wrong: 2"
    loud, quiet = zhtext(*evaluate, cwd=tmp_path), zhtext(*evaluate, "-q", cwd=tmp_path)
    assert loud.stdout == quiet.stdout and "F MEASURE" in quiet.stdout
    assert loud.stderr == f"{warning}\nscored pred.txt against the gold: 2 lines\n"
    assert quiet.stderr == f"{warning}\n"

    (tmp_path / "in.txt").write_text("我爱北京\n\n天安门\n", encoding="utf-8")  # an empty line
    pipe = ("pipe", "in.txt", "--steps", "segment", "-o", "out.jsonl")
    report = [('zhtext: warning: 1 bad line(s), none dropped: each record says its "problems" (or '
               '"error" when it could not be read):'), "  empty line: 1 line(s): 2"]
    loud, quiet = zhtext(*pipe, cwd=tmp_path), zhtext(*pipe, "-q", cwd=tmp_path)
    assert quiet.stderr.splitlines() == report
    assert loud.stderr.splitlines()[-2:] == report and "3 documents in" in loud.stderr
    assert zhtext("discover", "in.txt", "-q", cwd=tmp_path).stderr == ""


@pytest.mark.parametrize("command", [
    ["tag"], ["title"], ["embed"], ["evaluate", "tagger", "--data"], ["evaluate", "gpt", "--data"],
    ["evaluate", "title", "--data"], ["evaluate", "embed", "--data"], ["generate", "--file"],
])
def test_model_commands_check_their_input_before_loading_the_model(tmp_path, command):
    """The model named does not exist: only an input checked first gives "no such file"."""
    res = zhtext(*command, tmp_path / "missing.txt", "-m", tmp_path / "no-model", cwd=tmp_path)
    assert_one_error(res, f"no such file: {tmp_path / 'missing.txt'}")
    (tmp_path / "wide.txt").write_bytes(WORDS.encode("utf-16"))
    res = zhtext(*command, tmp_path / "wide.txt", "-m", tmp_path / "no-model", cwd=tmp_path)
    assert_one_error(res, "looks like UTF-16")


BAD_USER_LINES = [
    ("北京清华\t12".encode(), "a tab"),
    ("北京清华 3.5".encode(), "bad count '3.5'"),
    ("北京清华 3 NR".encode(), "bad tag 'NR'"),
    (b"\xff\xfe 3", "cannot decode byte at offset 14"),
]


@pytest.mark.parametrize(("line", "fragment"), BAD_USER_LINES)
@pytest.mark.parametrize("command", ["segment", "keywords"])
def test_a_bad_user_dict_line_is_one_error_naming_file_and_line(
    tmp_path, corpus, command, line, fragment
):
    user = tmp_path / "bad.dict"
    user.write_bytes("云计算 5\n".encode() + b"\r\n" + line + b"\n")
    res = zhtext(command, corpus, "--user-dict", user, "-o", "out.txt", cwd=tmp_path)
    assert_one_error(res, f"{user}:3: {fragment}")
    assert res.stdout == "" and not (tmp_path / "out.txt").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- models and training runs

NER = "".join(  # CLUENER lines, one place each
    json.dumps({"text": text, "label": {"LOC": {place: [[start, start + len(place) - 1]]}}},
               ensure_ascii=False) + "\n"
    for text, place, start in [("我爱北京天安门", "北京", 2), ("他在上海工作", "上海", 2),
                               ("广州的天气不错", "广州", 0), ("我们去杭州旅游", "杭州", 3)])
TINY = ("--from-scratch", "--layers", "1", "--hidden", "32", "--batch-size", "2", "-q")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tagger, a title model, a GPT-2 and an encoder, tiny and untrained, saved as zhtext (or
    transformers) saves them: built once for the whole file."""
    from transformers import BertModel

    from zhtext.neural.scratch import (
        build_char_vocab,
        char_tokenizer,
        small_bert_config,
    )
    from zhtext.tasks.generate import TextGenerator
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig
    from zhtext.tasks.title import TitleGenerator

    root = tmp_path_factory.mktemp("models")
    data = root / "ner.json"
    data.write_text(NER, encoding="utf-8")
    Tagger.train(TaggerTrainConfig(train=str(data), output=root / "tagger", layers=1, hidden=32,
                                   heads=1, max_steps=1, progress=False))
    texts = ["今天天气很好，我们去公园", "北京是中国的首都", WORDS]
    TitleGenerator.from_scratch(texts[:2], layers=1, hidden=32, max_source_len=32,
                                max_target_len=8).save(root / "title")
    TextGenerator.from_scratch(texts, layers=1, hidden=32, block_size=32).save(root / "gpt")
    vocab = build_char_vocab(texts)
    char_tokenizer(vocab, root / "encoder", model_max_length=32)
    BertModel(small_bert_config(len(vocab), layers=1, hidden=32, heads=2, max_position=32)
              ).save_pretrained(root / "encoder")
    return {name: root / name for name in ("tagger", "title", "gpt", "encoder")}


def _damage(weights: Path, value: float | None = None) -> None:
    """Flip every byte after the safetensors header (names and shapes stay readable), or with
    ``value`` write that number into every float instead."""
    data = bytearray(weights.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    if value is None:
        data[start:] = bytes(b ^ 0xFF for b in data[start:])
    else:
        data[start:] = struct.pack("<f", value) * ((len(data) - start) // 4)
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize(("command", "kind", "weights"), [
    ("tag", "tagger", "model.safetensors"), ("tag", "tagger", "tagger_head.safetensors"),
    ("title", "title", "model.safetensors"), ("title", "title", "title_prior.safetensors"),
])
def test_damaged_weights_are_one_line_naming_the_folder(tmp_path, corpus, tiny_models, command,
                                                        kind, weights):
    folder = tmp_path / "model"
    shutil.copytree(tiny_models[kind], folder)
    _damage(folder / weights)
    res = zhtext(command, corpus, "-m", folder, "-o", "out.txt", cwd=tmp_path)
    # Caught on loading (NaN, infinite or absurd values) or, for flipped bytes that still read as
    # plausible numbers, when the model runs: either way one line naming the folder.
    assert_one_error(res, f"{folder}", "damaged", "save or download the model again")
    assert not (tmp_path / "out.txt").exists()


def test_a_model_that_fails_while_running_is_one_line_naming_the_folder(tmp_path, corpus,
                                                                        tiny_models):
    """Large but finite weights pass the checks on loading; the scores they give do not."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_models["tagger"], folder)
    _damage(folder / "model.safetensors", 5e7)
    res = zhtext("tag", corpus, "-m", folder, "-o", "out.txt", cwd=tmp_path)
    assert_one_error(res, f"the model in {folder} failed while running", "may be damaged")
    assert not (tmp_path / "out.txt").exists()


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_training_into_a_folder_of_other_files_needs_overwrite(tmp_path):
    (tmp_path / "ner.json").write_text(NER, encoding="utf-8")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}\n', encoding="utf-8")
    (out / "notes.txt").write_text("keep me\n", encoding="utf-8")
    before = _snapshot(out)
    res = zhtext("train", "tagger", "--train", "ner.json", "-o", out, *TINY, cwd=tmp_path)
    assert_one_error(res, f"{out} is not empty and not a zhtext tagger model",
                     "config.json, notes.txt", "--overwrite")
    assert _snapshot(out) == before
    res = zhtext("train", "tagger", "--train", "ner.json", "-o", out, "--max-steps", "1",
                 "--overwrite", *TINY, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me\n"
    assert json.loads((out / "zhtext.json").read_text(encoding="utf-8"))["task"] == "tagger"
    assert leftovers(out) == []


@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "tagger", "--train", "missing.json", *TINY], "missing.json"),
    (["train", "title", "--train", "pairs.tsv", "-m", "./no-such-model", "-q"], "no such directory"),
    (["train", "embed", "--train", "pairs.tsv", "-m", "./no-such-model", "-q"], "no such directory"),
    (["train", "tagger", "--train", "ner.json", "--resume", *TINY], "nothing to resume"),
])
def test_a_failed_start_leaves_no_folder(tmp_path, args, fragment):
    (tmp_path / "ner.json").write_text(NER, encoding="utf-8")
    (tmp_path / "pairs.tsv").write_text("标题\t内容\n", encoding="utf-8")
    res = zhtext(*args, "-o", "out", cwd=tmp_path)
    assert_one_error(res, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["train", "tagger", "--train", "ner.json", *TINY, "-o", "a-file.txt"],
                                  ["train", "tagger", "--train", "ner.json", *TINY, "-o", "/proc/zhtext-test/m"]])
def test_training_into_a_file_or_an_unwritable_place_is_one_line(tmp_path, args):
    (tmp_path / "ner.json").write_text(NER, encoding="utf-8")
    (tmp_path / "a-file.txt").write_text("mine\n", encoding="utf-8")
    assert_one_error(zhtext(*args, cwd=tmp_path), args[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file.txt", "ner.json"]
    assert (tmp_path / "a-file.txt").read_text(encoding="utf-8") == "mine\n"


def test_a_time_budget_keeps_the_checkpoint_says_so_and_spans_resumes(tmp_path):
    (tmp_path / "ner.json").write_text(NER, encoding="utf-8")
    train = ("train", "tagger", "--train", "ner.json", "-o", "out", "--epochs", "2", *TINY)
    checkpoint = tmp_path / "out" / "checkpoint" / "state.pt"
    res = zhtext(*train, "--max-seconds", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip().splitlines() == [(
        "zhtext: warning: training stopped at the time budget (--max-seconds 0) at step 1 of 4; "
        "its checkpoint out/checkpoint/state.pt is kept: --resume with a larger --max-seconds "
        "continues the run")]
    assert checkpoint.is_file()
    before = _snapshot(tmp_path / "out")
    assert_one_error(zhtext(*train, "--max-seconds", "0", "--resume", cwd=tmp_path),
                     "the time budget is spent", "give a larger --max-seconds")
    assert_one_error(zhtext(*train, cwd=tmp_path), "holds a training checkpoint", "--resume")
    assert _snapshot(tmp_path / "out") == before
    res = zhtext(*train, "--resume", "--keep-checkpoint", cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    import torch

    # The completed run's checkpoint, kept on request (without it, removed: tests/test_training.py).
    assert torch.load(checkpoint, weights_only=False)["loop"]["step"] == 4


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
