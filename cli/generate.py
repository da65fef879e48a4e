"""zhtext CLI: ``generate``, ``train gpt`` and ``evaluate gpt`` (GPT-2 text generation)."""

from __future__ import annotations

import itertools
import json
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from zhtext.errors import ZhtextError

from .base import (
    DeviceOpt,
    EncodingOpt,
    GradAccumOpt,
    HiddenOpt,
    LayersOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    ResumeOpt,
    SeedOpt,
    app,
    check_model_or_scratch,
    console,
    evaluate_app,
    train_app,
)

# Longest line read from a corpus or prompt file; longer lines arrive in pieces (bounded memory).
MAX_LINE_CHARS = 100_000


class OutFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


BatchSize = Annotated[int, typer.Option("--batch-size", help="Prompts decoded together.")]


def _read_lines(paths: str | list[str], encoding: str | None) -> list[str]:
    from zhtext.io.reading import iter_many_lines

    paths = [paths] if isinstance(paths, str) else paths
    return [line for line in iter_many_lines(paths, encoding, MAX_LINE_CHARS) if line.strip()]


@app.command("generate")
def generate(
    prompt: Annotated[str | None, typer.Argument(
        help="Text to continue. Without it, prompts are read one per line from --file or stdin.",
        show_default=False)] = None,
    model: Annotated[str, typer.Option(
        "--model", help="GPT-2 checkpoint: hub id (uer/gpt2-chinese-cluecorpussmall, gpt2) or local "
        "directory (from 'zhtext train gpt').", show_default=False)] = ...,
    file: Annotated[str | None, typer.Option(
        "--file", help="Prompts, one per line ('-' reads stdin).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Most tokens to add.")] = 64,
    min_new_tokens: Annotated[int, typer.Option(
        "--min-new-tokens", help="Fewest tokens to add (the end token is banned until then).")] = 0,
    temperature: Annotated[float, typer.Option(
        "--temperature", help="Sampling temperature (< 1 sharper, > 1 more varied).")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Sample among the K likeliest tokens (0: all).")] = 50,
    top_p: Annotated[float, typer.Option(
        "--top-p", help="Sample among the fewest tokens holding this much probability (1: all).")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(
        "--repetition-penalty", help="> 1 makes tokens already in the prompt or output less likely "
        "(sign-correct: negative logits are multiplied, positive ones divided).")] = 1.0,
    no_repeat_ngram: Annotated[int, typer.Option(
        "--no-repeat-ngram", help="Never repeat an n-gram of this size (0: off).")] = 0,
    num: Annotated[int, typer.Option("--num", help="Continuations per prompt.")] = 1,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Random seed: the same seed and prompt give the same text, whatever else is in the batch.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the likeliest token.")] = False,
    beam: Annotated[int, typer.Option(
        "--beam", help="Beam search with this many beams (> 1; not streamed).")] = 1,
    length_penalty: Annotated[float, typer.Option(
        "--length-penalty", help="Beam score = log-prob / length ** this.")] = 1.0,
    stream: Annotated[bool, typer.Option(
        "--stream/--no-stream", help="Print tokens as they come (text format).")] = True,
    out_format: Annotated[OutFormat, typer.Option(
        "--format", help='text: prompt and continuation, one line per sample; jsonl: {"prompt", '
        '"sample", "text"} per sample, "text" being the continuation.')] = OutFormat.text,
    batch_size: BatchSize = 8,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Continue prompts with a GPT-2 (uer-style Chinese checkpoints with a BERT tokenizer, or BPE).

    Examples:

        zhtext generate "林黛玉" --model gpt-novels --max-new-tokens 50 --seed 1

        zhtext generate "话说" --model uer/gpt2-chinese-cluecorpussmall --top-p 0.9 --repetition-penalty 1.2 --num 3

        zhtext generate --file prompts.txt --model gpt-novels --greedy --no-stream --format jsonl
    """
    from zhtext.tasks.generate import TextGenerator
    from zhtext.io.reading import iter_lines

    if prompt is not None and file is not None:
        raise ZhtextError("give a PROMPT or --file, not both")
    if greedy and beam > 1:
        raise ZhtextError("--greedy and --beam do not mix: choose one")
    if prompt is not None:
        prompts = iter([prompt])
    else:
        prompts = (line for line in iter_lines(file or "-", encoding, MAX_LINE_CHARS) if line.strip())
    first = next(prompts, None)  # a missing or unreadable input fails before the model loads
    if first is None:
        raise ZhtextError("no prompt: give one as an argument, or lines with --file or on stdin")
    options = {"max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens,
               "sample": False if greedy or beam > 1 else None, "temperature": temperature,
               "top_k": top_k, "top_p": top_p, "repetition_penalty": repetition_penalty,
               "no_repeat_ngram": no_repeat_ngram, "num": num, "beams": beam,
               "length_penalty": length_penalty, "seed": seed}
    TextGenerator.options(**options)  # bad options fail before the model loads
    gen = TextGenerator.load(model, device=device, batch_size=batch_size)
    prompts = itertools.chain([first], prompts)
    live = stream and beam == 1
    offset = 0
    while chunk := list(itertools.islice(prompts, batch_size)):
        if live:
            _print_stream(gen, chunk, offset, options, out_format)
        else:
            for i, texts in enumerate(gen.generate(chunk, **options)):
                for sample, text in enumerate(texts):
                    _print_one(chunk[i], offset + i, sample, text, out_format)
        offset += len(chunk)


def _print_one(prompt: str, index: int, sample: int, text: str, out_format: OutFormat) -> None:
    if out_format is OutFormat.jsonl:
        record = {"index": index, "prompt": prompt, "sample": sample, "text": text}
        sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(prompt + text + "\n")
    sys.stdout.flush()


def _print_stream(gen, chunk: list[str], offset: int, options: dict, out_format: OutFormat) -> None:
    """Text: the prompt, then each piece as it comes. JSONL: a record as soon as a sample ends."""
    started = False
    held = ""
    for piece in gen.stream(chunk, **options):
        prompt = chunk[piece.prompt]
        if out_format is OutFormat.jsonl:
            held += piece.text
            if piece.last:
                _print_one(prompt, offset + piece.prompt, piece.sample, held, out_format)
                held = ""
            continue
        if not started:
            sys.stdout.write(prompt)
            started = True
        sys.stdout.write(piece.text + ("\n" if piece.last else ""))
        sys.stdout.flush()
        started = not piece.last


@train_app.command("gpt")
def train_gpt(
    train: Annotated[list[str], typer.Option(
        "--train", help="Raw text, one document per line (UTF-8 or GB18030); repeat for several "
        "files.", show_default=False)],
    out: Annotated[str, typer.Option(
        "--out", help="Folder for the model (Hugging Face layout + zhtext.json).", show_default=False)],
    model: Annotated[str | None, typer.Option(
        "--model", help="GPT-2 checkpoint to continue training: hub id or local directory.")] = None,
    from_scratch: Annotated[bool, typer.Option(
        "--from-scratch", help="Build a small GPT-2 over a character vocabulary of the training text.")] = False,
    dev: Annotated[str | None, typer.Option(
        "--dev", help="Held-out lines: the model with the lowest dev perplexity is kept.")] = None,
    heldout_every: Annotated[int | None, typer.Option(
        "--heldout-every", help="Hold out every N-th training line as dev data (instead of --dev).")] = None,
    layers: LayersOpt = 4,
    hidden: HiddenOpt = 256,
    max_vocab: Annotated[int | None, typer.Option(
        "--max-vocab", help="From scratch: keep only the most frequent characters.")] = None,
    block_size: Annotated[int, typer.Option(
        "--block-size", help="Tokens per training block (from scratch: also the model's positions).")] = 128,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training text.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Blocks per batch.")] = 16,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Learning rate (default: 5e-5 pretrained, 1e-3 from scratch).")] = None,
    seed: SeedOpt = 42,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    grad_accum: GradAccumOpt = 1,
    resume: ResumeOpt = False,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Train a GPT-2 causal language model on raw text.

    Examples:

        zhtext train gpt --train hongloumeng.txt --train xiyouji.txt --from-scratch --heldout-every 100 --out gpt-novels --max-seconds 600

        zhtext train gpt --train corpus.txt --dev heldout.txt --model uer/gpt2-chinese-cluecorpussmall --out gpt-tuned --epochs 2

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.generate import TextGenerator

    check_model_or_scratch(model, from_scratch)
    if dev and heldout_every is not None:
        raise ZhtextError("give --dev or --heldout-every, not both")
    lines = _read_lines(train, encoding)
    dev_lines = _read_lines(dev, encoding) if dev else None
    if dev and not dev_lines:
        raise ZhtextError("the --dev text has no non-empty lines")
    if heldout_every is not None:
        from zhtext.neural.lmdata import split_heldout

        lines, dev_lines = split_heldout(lines, heldout_every)
    console.print(f"training on {len(lines)} lines" + (f", dev {len(dev_lines)} lines" if dev_lines else ""))
    gen = TextGenerator.train(
        lines, dev_lines, out_dir=out, model=model, layers=layers, hidden=hidden,
        block_size=block_size, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        max_seconds=max_seconds, max_steps=max_steps, grad_accum=grad_accum, max_vocab=max_vocab,
        resume=resume, device=device,
    )
    best = gen.meta.get("best") or {}
    summary = f"model saved to {out}"
    if "ppl" in best:
        summary += f" (dev perplexity {best['ppl']:.2f}, {best['bits_per_char']:.3f} bits/char)"
    console.print(summary)


@evaluate_app.command("gpt")
def evaluate_gpt(
    model: Annotated[str, typer.Option("--model", help="GPT-2 checkpoint: hub id or directory.",
                                       show_default=False)],
    data: Annotated[list[str], typer.Option(
        "--data", help="Text to score, one document per line; repeat for several files.",
        show_default=False)],
    heldout_every: Annotated[int | None, typer.Option(
        "--heldout-every", help="Score only every N-th line: the lines 'zhtext train gpt "
        "--heldout-every N' held out of the same files.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N lines.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the figures as one JSON object instead of a table.")] = False,
    batch_size: BatchSize = 8,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Perplexity of a GPT-2 on held-out text, and bits per character (comparable with the bits
    per character that word discovery reports for a lexicon).

    Example:

        zhtext evaluate gpt --model gpt-novels --data heldout.txt

        zhtext evaluate gpt --model gpt-novels --data hongloumeng.txt --data xiyouji.txt --heldout-every 100
    """
    from zhtext.tasks.generate import TextGenerator

    lines = _read_lines(data, encoding)
    if heldout_every is not None:
        from zhtext.neural.lmdata import split_heldout

        lines = split_heldout(lines, heldout_every)[1]
    lines = lines[:limit]
    gen = TextGenerator.load(model, device=device, batch_size=batch_size)
    scores = gen.perplexity(lines)
    scores["lines"] = len(lines)
    if as_json:
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()}))
        return
    files = data[0] if len(data) == 1 else f"{len(data)} files"
    table = Table(title=f"{model} on {files}" + (f" (every {heldout_every}th line)" if heldout_every else ""))
    for column in ("perplexity", "bits/char", "tokens", "chars", "lines"):
        table.add_column(column, justify="right")
    table.add_row(f"{scores['ppl']:.3f}", f"{scores['bits_per_char']:.4f}", str(scores["tokens"]),
                  str(scores["chars"]), str(scores["lines"]))
    console.print(table)
