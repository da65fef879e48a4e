"""The ``zhtext`` entry point: Ctrl-C, usage errors and user errors each end in one clear way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, sigint_as_usual

from zhtext.lexical.segment import Segmenter


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.dict"
    path.write_text("你好 10\n世界 5\n", "utf-8")
    return path


def test_ctrl_c_inside_a_command_is_one_line_status_130_and_no_output_file(
    tmp_path, dictionary, monkeypatch, capsys
):
    real = Segmenter.segment_chunks
    written = []

    def interrupted_after_one_block(self, chunks, sep=" ", **options):
        blocks = real(self, chunks, sep, **{**options, "block_chars": 64})
        written.append(next(blocks))
        yield written[-1]  # the command writes this block before the interrupt arrives
        raise KeyboardInterrupt

    # what zhtext segment runs (Segmenter.segment_file reads its blocks from segment_chunks)
    monkeypatch.setattr(Segmenter, "segment_chunks", interrupted_after_one_block)
    corpus = tmp_path / "in.txt"
    corpus.write_text("你好世界\n" * 100, "utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run_cli(
        monkeypatch, capsys, "segment", str(corpus), "--dict", str(dictionary), "-o", str(out_dir / "seg.txt")
    )
    assert (code, out, err) == (130, "", "zhtext: interrupted\n")
    assert written  # the interrupt came mid-output, after a block was written
    assert list(out_dir.iterdir()) == []  # neither the output nor its temporary file


def test_sigint_to_a_running_command_exits_130_without_traceback(tmp_path, dictionary):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # Reading an open, silent stdin keeps the command busy inside its atomic output.
    command = [sys.executable, "-c", "from zhtext_cli.entry import main; main()", "segment", "-",
               "--dict", str(dictionary), "-o", str(out_dir / "seg.txt"), "-q"]  # fmt: skip
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=sigint_as_usual)  # fmt: skip
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


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["segment", "--no-such-option"], "no such option: --no-such-option"),
        (["tag", "in.txt", "-m", "m", "--nbest", "2"], "no such option: --nbest (did you mean --n-best?)"),
        (["tag", "in.txt"], "missing option -m/--model"),
        (["similar", "--index", "i.npy", "--texts", "t.txt"], "missing argument QUERIES"),
        (["tag", "in.txt", "-m", "m", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["tag", "in.txt", "-m", "m", "--batch-size=-3"], "--batch-size must be at least 1, got -3"),
        (["similar", "q", "--index", "i.npy", "--texts", "t.txt", "-k0"], "-k must be at least 1, got 0"),
        (["similar", "q", "--index", "i.npy", "--texts", "t.txt", "--neighbours", "0"],
         "--neighbours must be at least 1, got 0"),
        (["tag", "in.txt", "-m", "m", "--batch-size", "lots"], "--batch-size must be a whole number, got 'lots'"),
        (["generate", "x", "-m", "m", "--top-p", "1.5"], "--top-p must be at most 1, got 1.5"),
        (["generate", "x", "-m", "m", "--top-p", "0"], "--top-p must be more than 0, got 0"),
        (["generate", "x", "-m", "m", "--temperature", "nan"], "--temperature must be more than 0, got nan"),
        (["tag", "in.txt", "-m", "m", "--format", "xml"], "--format must be one of jsonl, conll, got 'xml'"),
        (["discover", "in.txt", "--format", "csv"], "--format must be one of tsv, jieba, got 'csv'"),
        (["generate", "x", "-m", "m", "--min-new-tokens", "9", "--max-new-tokens", "3"],
         "--min-new-tokens (9) cannot exceed --max-new-tokens (3)"),
        (["generate", "x", "-m", "m", "--num", "3", "--beam", "2"],
         "--num (3) cannot exceed --beam (2): beam search returns the best of its beams"),
        (["segment", "a.txt", "b.txt"], "got unexpected extra argument(s) (b.txt)"),
        (["segmnet"], "no such command 'segmnet'. Did you mean 'segment'?"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option_as_typed_and_status_2(monkeypatch, capsys, args, line):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert (code, out, err) == (2, "", f"zhtext: error: {line}\n")


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


def test_train_gpt_old_out_spelling_still_works_and_warns_once(tmp_path, monkeypatch, capsys):
    import zhtext_cli.base

    monkeypatch.setattr(zhtext_cli.base, "_warned", set())  # as in a fresh process
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("我爱北京天安门\n北京是中国的首都\n" * 10, "utf-8")
    common = ["train", "gpt", "--train", str(corpus), "--from-scratch", "--layers", "1",
              "--hidden", "32", "--block-size", "16", "--max-steps", "1", "-q"]
    warning = "zhtext: warning: --out is deprecated, use --output"
    code, out, err = run_cli(monkeypatch, capsys, *common, "--out", str(tmp_path / "old"))
    assert code == 0 and out == "" and err.count(warning) == 1 and err.count("\n") == 1
    assert (tmp_path / "old" / "zhtext.json").is_file()
    code, _, err = run_cli(monkeypatch, capsys, *common, f"--out={tmp_path / 'again'}")
    assert code == 0 and err == "" and (tmp_path / "again" / "zhtext.json").is_file()
    code, _, err = run_cli(monkeypatch, capsys, *common, "--output", str(tmp_path / "new"))
    assert code == 0 and err == "" and (tmp_path / "new" / "zhtext.json").is_file()
    # The old spelling is hidden from --help.
    code, out, _ = run_cli(monkeypatch, capsys, "train", "gpt", "--help")
    assert code == 0 and "--output" in out and "--out " not in out


# ---------------------------------------------------------------- old option spellings (tagger)


def test_old_tagger_spellings_still_work_and_warn_once(tmp_path, monkeypatch, capsys):
    from zhtext_cli import base

    monkeypatch.setattr(base, "_warned", set())  # as in a fresh process
    train = tmp_path / "train.conll"
    train.write_text("张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n李 B-PER\n四 I-PER\n好 O\n", "utf-8")
    model = tmp_path / "m"
    code, _, err = run_cli(monkeypatch, capsys, "train", "tagger", "--train", str(train), "--from-scratch",
                           "--layers", "1", "--hidden", "16", "--max-len", "8", "--max-steps", "1",
                           "--format", "conll", "--ema", "0.9", "--out", str(model))
    assert code == 0, err
    assert (model / "zhtext.json").is_file()
    assert err.count("zhtext: warning: --format is deprecated, use --input-format") == 1
    assert err.count("zhtext: warning: --out is deprecated, use --output") == 1

    texts = tmp_path / "in.txt"
    texts.write_text("张三在北京\n李四好\n", "utf-8")
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    code, _, err = run_cli(monkeypatch, capsys, "tag", str(texts), "-m", str(model), "--n-best", "2", "-o", str(new))
    assert code == 0 and "deprecated" not in err
    for run in range(2):
        code, _, err = run_cli(monkeypatch, capsys, "tag", str(texts), "-m", str(model), "--top-k", "2",
                               "-o", str(old))
        assert code == 0 and old.read_bytes() == new.read_bytes() and '"nbest"' in new.read_text("utf-8")
        warned = err.count("zhtext: warning: --top-k is deprecated, use --n-best")
        assert warned == (1 if run == 0 else 0)  # once per process

    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "tagger", "-m", str(model), "--data", str(train),
                             "--format", "conll", "--json")
    code_new, out_new, _ = run_cli(monkeypatch, capsys, "evaluate", "tagger", "-m", str(model), "--data",
                                   str(train), "--input-format", "conll", "--json")
    assert code == code_new == 0 and out == out_new and "labels" in out
    assert err.count("deprecated") == 0  # --format was already warned about once


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


def _console(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """The console script as a user runs it, in its own process (it ends with os._exit)."""
    command = [sys.executable, "-c", "from zhtext_cli.entry import main; main()", *args]
    return subprocess.run(command, input=stdin, capture_output=True, timeout=120, check=False)


def test_the_console_script_skips_teardown_but_keeps_statuses_output_and_atexit(tmp_path, dictionary):
    text = "".join(f"你好世界{i}\n" for i in range(20_000))
    ok = _console("segment", "-", "--dict", str(dictionary), "-q", stdin=text.encode())
    assert (ok.returncode, ok.stderr) == (0, b"")
    # every line reached the pipe: nothing was left in a buffer by skipping the teardown
    expected = Segmenter(dictionary, hmm=True).segment_text(text)
    assert ok.stdout.decode() == expected
    assert _console("segment", str(tmp_path / "absent.txt")).returncode == 1
    assert _console("segment", "--no-such-option").returncode == 2
    # atexit handlers still run (Ray, multiprocessing and temporary folders rely on them), while
    # the teardown that frees every object (here one whose __del__ would say so) does not
    marker, torn = tmp_path / "atexit.txt", tmp_path / "teardown.txt"
    script = ("import atexit, sys\n"
              f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
              "class Freed:\n"
              f"    def __del__(self, path={str(torn)!r}, open=open):\n"
              "        open(path, 'w').write('freed')\n"
              "kept = Freed()\n"
              "sys.argv = ['zhtext', '--help']\n"
              "from zhtext_cli.entry import main\n"
              "main()\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0 and b"segment" in proc.stdout
    assert marker.read_text() == "ran"
    assert not torn.exists()  # the interpreter's teardown was skipped


def test_skipping_numbas_blas_probe_keeps_its_linear_algebra():
    # In the console script, numba.np.arraymath does not import SciPy to probe for BLAS; np.dot
    # still compiles (it imports SciPy itself), and np.convolve takes its own inner products.
    pytest.importorskip("scipy")
    script = (
        "import sys\n"
        "from zhtext_cli.entry import _SkipBlasProbe\n"
        "sys.meta_path.insert(0, _SkipBlasProbe())\n"
        "import numpy as np, numba\n"
        "@numba.njit\n"
        "def f(a, b):\n"
        "    return np.dot(a, b), np.convolve(a, b)\n"
        "a, b = np.arange(4.0), np.arange(1.0, 5.0)\n"
        "d, c = f(a, b)\n"
        "import numba.np.arraymath as m\n"
        "print(m._HAVE_BLAS, d == np.dot(a, b), np.allclose(c, np.convolve(a, b)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert proc.stdout.split() == ["False", "True", "True"], proc.stderr
