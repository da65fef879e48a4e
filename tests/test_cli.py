"""The ``zhtext`` entry point: Ctrl-C, usage errors and user errors each end in one clear way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

from zhtext.lexical.segment import Segmenter


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.dict"
    path.write_text("你好 10\n世界 5\n", "utf-8")
    return path


def test_ctrl_c_inside_a_command_is_one_line_status_130_and_no_output_file(
    tmp_path, dictionary, monkeypatch, capsys
):
    real = Segmenter.segment_batches

    def interrupted_after_one_batch(self, lines, sep=" ", batch_chars=64):
        batches = real(self, lines, sep, batch_chars=batch_chars)
        yield next(batches)  # the command writes this batch before the interrupt arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(Segmenter, "segment_batches", interrupted_after_one_batch)
    corpus = tmp_path / "in.txt"
    corpus.write_text("你好世界\n" * 100, "utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(
        monkeypatch, capsys, "segment", str(corpus), "--dict", str(dictionary), "-o", str(out_dir / "seg.txt")
    )
    assert (code, out, err) == (130, "", "zhtext: interrupted\n")
    assert list(out_dir.iterdir()) == []  # neither the output nor its temporary file


def test_sigint_to_a_running_command_exits_130_without_traceback(tmp_path, dictionary):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # Reading an open, silent stdin keeps the command busy inside its atomic output.
    command = [sys.executable, "-c", "from zhtext_cli.entry import main; main()", "segment", "-",
               "--dict", str(dictionary), "-o", str(out_dir / "seg.txt"), "-q"]  # fmt: skip
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write("你好世界\n".encode())
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not any(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(out_dir.iterdir()), "the command never opened its output"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.decode() == "zhtext: interrupted\n" and out == b""
    assert list(out_dir.iterdir()) == []


def test_ctrl_c_while_the_cli_imports_is_one_line_status_130():
    # The interrupt arrives as the CLI's modules load, before any command runs.
    script = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def slow(name, *args, **kwargs):\n"
        "    if name == 'app':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = slow\n"
        "sys.argv = ['zhtext', '--help']\n"
        "from zhtext_cli.entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 130
    assert proc.stderr.decode() == "zhtext: interrupted\n" and proc.stdout == b""


def test_bad_option_prints_usage_and_exits_2(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "segment", "--no-such-option")
    assert code == 2 and out == ""
    assert "Usage: zhtext segment" in err and "No such option: --no-such-option" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "expected"), [(["--help"], 0), (["segment", "-h"], 0), (["evaluate", "--help"], 0), ([], 2)]
)
def test_help_exits_like_click(monkeypatch, capsys, args, expected):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == expected
    assert "Usage" in out + err


def test_user_error_is_one_line_and_status_1(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "missing.txt"
    code, out, err = run_cli(monkeypatch, capsys, "segment", str(missing), "-o", str(tmp_path / "out.txt"))
    assert code == 1 and out == ""
    assert err.startswith("zhtext: error: ") and err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize(
    ("command", "shown", "hidden"),
    [
        (["similar"], ["-k", "--neighbours", "--output"], ["--top-k"]),
        (["embed"], ["-m", "--model", "--output", "--format"], []),
        (["evaluate", "embed"], ["-m", "--model", "--data", "--json"], []),
        (["train", "embed"], ["-m", "--model", "--train", "--output", "--dim"], ["--epochs", "--lr"]),
    ],
)
def test_embedding_commands_use_the_shared_vocabulary(monkeypatch, capsys, command, shown, hidden):
    code, out, _ = run_cli(monkeypatch, capsys, *command, "--help")
    words = set(out.replace("│", " ").split())
    assert code == 0
    assert all(name in words for name in shown) and not any(name in words for name in hidden)
