"""zhtext CLI: ``generate``, ``train gpt`` and ``evaluate gpt`` (GPT-2 text generation)."""

from __future__ import annotations

import itertools
import json
from enum import Enum
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.table import Table

from zhtext.errors import ZhtextError

from .base import (
    BatchSizeOpt,
    BeamOpt,
    DecodeSeedOpt,
    DevDataOpt,
    DeviceOpt,
    DevLimitOpt,
    EmaOpt,
    EncodingOpt,
    EpochsOpt,
    EvalEveryOpt,
    FromScratchOpt,
    GradAccumOpt,
    HeldoutEveryOpt,
    HiddenOpt,
    JsonOpt,
    KeepCheckpointOpt,
    LayersOpt,
    LengthPenaltyOpt,
    LimitOpt,
    LrOpt,
    MaxNewTokensOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    MaxVocabOpt,
    MinNewTokensOpt,
    ModelDirOpt,
    ModelOpt,
    NoRepeatNgramOpt,
    OutputOpt,
    OverwriteOpt,
    QuantizeOpt,
    QuietOpt,
    RepetitionPenaltyOpt,
    ResumeOpt,
    SampleOpt,
    SeedOpt,
    StartModelOpt,
    TemperatureOpt,
    TopKOpt,
    TopPOpt,
    alias,
    app,
    console,
    decode_options,
    echo,
    evaluate_app,
    train_app,
    train_model,
)

# Old spellings kept for one release (hidden, warn once).
alias("train gpt", "--out", "--output")


class OutFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


@app.command("generate")
def generate(
    prompt: Annotated[str | None, typer.Argument(
        help="Text to continue. Without it, prompts are read one per line from --file or stdin.",
        show_default=False)] = None,
    model: ModelOpt = ...,
    file: Annotated[str | None, typer.Option(
        "--file", help="Prompts, one per line ('-' reads stdin).")] = None,
    output: OutputOpt = None,
    max_new_tokens: MaxNewTokensOpt = 64,
    min_new_tokens: MinNewTokensOpt = None,
    sample: SampleOpt = None,
    temperature: TemperatureOpt = 1.0,
    top_k: TopKOpt = 50,
    top_p: TopPOpt = 1.0,
    repetition_penalty: RepetitionPenaltyOpt = 1.0,
    no_repeat_ngram: NoRepeatNgramOpt = None,
    beam: BeamOpt = None,
    length_penalty: LengthPenaltyOpt = 1.0,
    num: Annotated[int, typer.Option(
        "--num", min=1, help="Continuations per prompt (beam search: the N best).")] = 1,
    seed: DecodeSeedOpt = None,
    stream: Annotated[bool, typer.Option(
        "--stream/--no-stream", help="Print tokens as they come (text format, to stdout).")] = True,
    out_format: Annotated[OutFormat, typer.Option(
        "--format", help='Output format. text: prompt and continuation, one line per sample; '
        'jsonl: {"index", "prompt", "sample", "text"} per sample, "text" being the '
        'continuation.')] = OutFormat.text,
    batch_size: BatchSizeOpt = 8,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    quiet: QuietOpt = False,  # taken by every command; generate draws no bar and prints no note
) -> None:
    """Continue prompts with a GPT-2 (uer-style Chinese checkpoints with a BERT tokenizer, or BPE).

    Sampling (top-k 50) is the default; --greedy takes the likeliest token, --beam N beam search.

    Output streams to stdout (except beam search), or goes whole to -o FILE.

    Examples:

        zhtext generate "林黛玉" -m gpt-novels --max-new-tokens 50 --seed 1

        zhtext generate "话说" -m uer/gpt2-chinese-cluecorpussmall --top-p 0.9 --repetition-penalty 1.2 --num 3

        zhtext generate --file prompts.txt -m gpt-novels --greedy --format jsonl -o out.jsonl
    """
    from zhtext.io.reading import iter_lines
    from zhtext.io.writing import atomic_output
    from zhtext.tasks.generate import TextGenerator

    if prompt is not None and file is not None:
        raise ZhtextError("give a PROMPT or --file, not both")
    config = decode_options(TextGenerator, locals())  # unset --sample: sample unless --beam > 1
    if prompt is not None:
        prompts = iter([prompt])
    else:
        # Whole lines, one prompt each, as in `zhtext pipe`: the model reads only a prompt's tail.
        prompts = (line for line in iter_lines(file or "-", encoding) if line.strip())
    first = next(prompts, None)  # a missing or unreadable input fails before the model loads
    if first is None:
        raise ZhtextError("no prompt: give one as an argument, or lines with --file or on stdin")
    live = stream and config.beam == 1 and output in (None, "-")
    with atomic_output(output) as out:
        gen = TextGenerator.load(model, device=device, batch_size=batch_size,
                                 quantize=quantize and quantize.value)
        prompts = itertools.chain([first], prompts)
        offset = 0
        while chunk := list(itertools.islice(prompts, batch_size)):
            if live:
                _write_stream(out, gen.stream(chunk, config), chunk, offset, out_format)
            else:
                for i, texts in enumerate(gen.generate(chunk, config)):
                    for n, text in enumerate(texts):
                        _write_record(out, chunk[i], offset + i, n, text, out_format)
            offset += len(chunk)


def _write_record(out: IO[str], prompt: str, index: int, sample: int, text: str,
                  out_format: OutFormat) -> None:
    if out_format is OutFormat.jsonl:
        record = {"index": index, "prompt": prompt, "sample": sample, "text": text}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        out.write(prompt + text + "\n")
    out.flush()


def _write_stream(out: IO[str], pieces, chunk: list[str], offset: int, out_format: OutFormat) -> None:
    """Text: the prompt, then each piece as it comes. JSONL: a record as soon as a sample ends."""
    started = False
    held = ""
    for piece in pieces:
        prompt = chunk[piece.prompt]
        if out_format is OutFormat.jsonl:
            held += piece.text
            if piece.last:
                _write_record(out, prompt, offset + piece.prompt, piece.sample, held, out_format)
                held = ""
            continue
        if not started:
            out.write(prompt)
            started = True
        out.write(piece.text + ("\n" if piece.last else ""))
        out.flush()
        started = not piece.last


@train_app.command("gpt")
def train_gpt(
    train: Annotated[list[str], typer.Option(
        "--train", help="Raw text, one document per line (UTF-8 or GB18030); repeat for several "
        "files.", show_default=False)],
    output: ModelDirOpt,
    model: StartModelOpt = None,
    from_scratch: FromScratchOpt = False,
    dev: DevDataOpt = None,
    heldout_every: HeldoutEveryOpt = None,
    layers: LayersOpt = 4,
    hidden: HiddenOpt = 256,
    max_vocab: MaxVocabOpt = None,
    block_size: Annotated[int, typer.Option(
        "--block-size", min=2, help="Tokens per training block (from scratch: also the model's positions).")] = 128,
    epochs: EpochsOpt = 1,
    batch_size: BatchSizeOpt = 16,
    lr: LrOpt = None,
    seed: SeedOpt = 42,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    grad_accum: GradAccumOpt = 1,
    ema: EmaOpt = 0.0,
    eval_every: EvalEveryOpt = None,
    dev_limit: DevLimitOpt = None,
    resume: ResumeOpt = False,
    keep_checkpoint: KeepCheckpointOpt = False,
    overwrite: OverwriteOpt = False,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a GPT-2 causal language model on raw text.

    The learning rate defaults to 1e-3 from scratch and 5e-5 from a checkpoint.

    Examples:

        zhtext train gpt --train hongloumeng.txt --train xiyouji.txt --from-scratch --heldout-every 100 -o gpt-novels --max-seconds 600

        zhtext train gpt --train corpus.txt --dev heldout.txt -m uer/gpt2-chinese-cluecorpussmall -o gpt-tuned --epochs 2

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.generate import GPTTrainConfig, TextGenerator

    train = [Path(path) for path in train]  # paths, not texts
    train_model(TextGenerator, GPTTrainConfig, locals(), "perplexity")


@evaluate_app.command("gpt")
def evaluate_gpt(
    model: ModelOpt,
    data: Annotated[list[str], typer.Option(
        "--data", help="Text to score, one document per line; repeat for several files.",
        show_default=False)],
    heldout_every: HeldoutEveryOpt = None,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    batch_size: BatchSizeOpt = 8,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,  # taken by every command; nothing here to silence
) -> None:
    """Perplexity of a GPT-2 on held-out text, and bits per character (comparable with the bits
    per character that word discovery reports for a lexicon).

    Examples:

        zhtext evaluate gpt -m gpt-novels --data heldout.txt

        zhtext evaluate gpt -m gpt-novels --data hongloumeng.txt --data xiyouji.txt --heldout-every 100
    """
    from zhtext.neural.lmdata import read_texts, split_heldout
    from zhtext.tasks.generate import TextGenerator

    lines = read_texts(data, encoding)
    if heldout_every is not None:
        lines = split_heldout(lines, heldout_every)[1]
    lines = lines[:limit]
    gen = TextGenerator.load(model, device=device, batch_size=batch_size)
    scores = gen.evaluate(lines)
    scores["lines"] = len(lines)
    if as_json:
        echo(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()}))
        return
    files = data[0] if len(data) == 1 else f"{len(data)} files"
    table = Table(title=f"{model} on {files}" + (f" (every {heldout_every}th line)" if heldout_every else ""))
    for column in ("perplexity", "bits/char", "tokens", "chars", "lines"):
        table.add_column(column, justify="right")
    table.add_row(f"{scores['ppl']:.3f}", f"{scores['bits_per_char']:.4f}", str(scores["tokens"]),
                  str(scores["chars"]), str(scores["lines"]))
    console.print(table)
