"""Peak memory of ``title``, ``embed``, ``tag`` and ``pipe`` on one very long line.

Usage: python benchmarks/long_line_memory.py [--quick] [--mb N] [--limit-mb M] [--only CMDS]
       [--keep DIR] [--timeout S]

One line of ``--mb`` megabytes (50; 5 with ``--quick``) of Chinese sentences with Latin words and
digits, no newline inside, is given to each command in a fresh process; the models are tiny ones
built in a temporary folder with the windows of real ones (a title model reading 256 tokens, an
encoder of 256 positions, a BERT+CRF tagger of 256-token windows, finding a span every ~17
characters). Each command runs on one thread. Reported per command: peak
resident MB of the process (``ru_maxrss`` from ``wait4``), seconds, exit status, and the size of
what it wrote. ``--limit-mb`` caps each process's address space (``RLIMIT_AS``), so a command that
would need more fails instead of taking the machine's memory.

The memory a command needs on such a line should not grow with the line beyond the line itself
(its text, its bytes, the record that echoes it): target under 1.5 GB each at 50 MB.

The last line is one JSON object: ``{"bench": "long_line_memory", "line_mb", "chars",
"peak_mb": {command: MB}, "seconds": {...}, "exit": {...}, "output_mb": {...}}``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_json, log, run_measured

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# One thread per command (torch, numba, tokenizers): the figures are memory, which threads hardly
# change, and on a busy machine more threads only make the run slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
              "TOKENIZERS_PARALLELISM": "false"}

SENTENCES = ["北京是中国的首都，上海是中国最大的城市。", "今天天气很好，我们去公园散步吧！",
             "张三在2024年3月15日购买了iPhone 15 Pro Max，花了8999元。",
             "The quick brown fox jumps over 13 lazy dogs; 天安门广场在北京市中心。",
             "李四说：人工智能(AI)和machine learning正在改变世界，GPT-4o于5月发布。"]  # fmt: skip
WINDOW = 256  # tokens: the window of each tiny model, as real ones have


def long_line(megabytes: float) -> str:
    """One line of about ``megabytes`` MB of UTF-8, without a newline."""
    unit = "".join(SENTENCES)
    size = len(unit.encode("utf-8"))
    return unit * max(1, int(megabytes * 1e6 / size))


def build_models(folder: Path) -> dict[str, str]:
    """A title model, an encoder and a tagger with random weights over a character vocabulary of
    :data:`SENTENCES`, each with a window of :data:`WINDOW` tokens, saved under ``folder``; their
    paths by command."""
    import torch
    from transformers import BertModel

    from zhtext.neural.scratch import (
        build_char_vocab,
        char_tokenizer,
        small_bert_config,
    )
    from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names
    from zhtext.tasks.title import TitleGenerator

    torch.manual_seed(0)
    title = TitleGenerator.from_scratch(SENTENCES, layers=1, hidden=32, heads=2,
                                        max_source_len=WINDOW, max_target_len=8, dropout=0.0)
    title.save(folder / "title")
    vocab = build_char_vocab(SENTENCES)
    config = small_bert_config(len(vocab), layers=1, hidden=32, heads=2, max_position=WINDOW)
    char_tokenizer(vocab, folder / "encoder", model_max_length=WINDOW)
    BertModel(config).save_pretrained(folder / "encoder")
    net = TaggerModel(BertModel(config), tag_names(["PER", "LOC"], "BIOES"), "BIOES", dropout=0.0)
    with torch.no_grad():
        net.emit.weight.mul_(10)  # spread the emissions so that spans come out
        net.emit.bias[0] += 12.0  # mostly "O": a span every ~17 characters, as dense as CLUENER
    Tagger(net, char_tokenizer(vocab), ["PER", "LOC"], "BIOES", WINDOW).save(folder / "tagger")
    return {"title": str(folder / "title"), "embed": str(folder / "encoder"),
            "tag": str(folder / "tagger")}


def commands(models: dict[str, str], line: Path, out: Path) -> dict[str, list[str]]:
    """The command line of each measured command, writing under ``out``."""
    pipe_steps = ["--steps", "tag,title,embed", "--set", f"tag.model={models['tag']}",
                  "--set", f"title.model={models['title']}", "--set", f"embed.model={models['embed']}"]
    return {
        "title": ["title", str(line), "--lines", "-m", models["title"], "--beam", "1",
                  "--max-new-tokens", "4", "-o", str(out / "title.txt")],
        "embed": ["embed", str(line), "-m", models["embed"], "-o", str(out / "embed.npy"), "-q"],
        "tag": ["tag", str(line), "-m", models["tag"], "-o", str(out / "tag.jsonl")],
        "pipe": ["pipe", str(line), *pipe_steps, "--set", "title.beam=1",
                 "--set", "title.max_new_tokens=4", "-o", str(out / "pipe.jsonl"), "-q"],
    }


def limit_address_space(megabytes: int | None):
    """A ``preexec_fn`` capping a child's address space at ``megabytes`` (None: no cap)."""
    if megabytes is None:
        return None
    cap = megabytes << 20
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 5 MB line")
    parser.add_argument("--mb", type=float, default=None, help="line size in MB (default 50)")
    parser.add_argument("--limit-mb", type=int, default=None, help="address-space cap per command")
    parser.add_argument("--only", default=None, help="comma-separated commands to run")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder, kept")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds a command may run (then killed: exit -9); a process that ran "
                             "out of address space can hang in a tokenizer's panic")
    args = parser.parse_args()
    megabytes = args.mb or (5.0 if args.quick else 50.0)

    with tempfile.TemporaryDirectory(prefix="zhtext-long-line-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        log("building the tiny models")
        models = build_models(work)
        line = work / "line.txt"
        text = long_line(megabytes)
        line.write_text(text + "\n", encoding="utf-8")
        chars, size_mb = len(text), line.stat().st_size / 1e6
        del text
        log(f"one line of {size_mb:.1f} MB, {chars} characters; zhtext from {zhtext_source()}")
        figures: dict[str, dict] = {"peak_mb": {}, "seconds": {}, "exit": {}, "output_mb": {}}
        todo = commands(models, line, work)
        for name in (args.only.split(",") if args.only else todo):
            with open(work / f"{name}.err", "w+", encoding="utf-8") as err:
                # run from the work folder: ``-m zhtext`` then finds the zhtext this script
                # imported (PYTHONPATH), not a checkout in the current folder
                seconds, _, peak, code = run_measured(
                    [sys.executable, "-m", "zhtext", *todo[name]], args.timeout, cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=err, env={**os.environ, **ONE_THREAD},
                    preexec_fn=limit_address_space(args.limit_mb))
                err.seek(0)
                last = (err.read().strip().splitlines() or [""])[-1]
            outputs = [p for p in work.glob(f"{name}.*") if p.is_file() and p.suffix != ".err"]
            written = sum(p.stat().st_size for p in outputs) / 1e6
            log(f"{name:6s} peak {peak:8.0f} MB  {seconds:7.1f} s  exit {code}  output {written:.1f} MB"
                + (f"  ({last})" if code else ""))
            figures["peak_mb"][name] = round(peak)
            figures["seconds"][name] = round(seconds, 1)
            figures["exit"][name] = code
            figures["output_mb"][name] = round(written, 1)
    emit_json({"bench": "long_line_memory", "line_mb": round(size_mb, 1), "chars": chars,
               "limit_mb": args.limit_mb, "zhtext": zhtext_source(), **figures})


def zhtext_source() -> str:
    """The folder the measured zhtext comes from."""
    import zhtext

    return str(Path(zhtext.__file__).resolve().parents[1])


if __name__ == "__main__":
    main()
