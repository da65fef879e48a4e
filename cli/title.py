"""zhtext CLI: ``train title``, ``title`` and ``evaluate title`` (UniLM headline generation)."""

from __future__ import annotations

import itertools
import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

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
    TrainDataOpt,
    alias,
    app,
    below,
    console,
    decode_options,
    echo,
    evaluate_app,
    train_app,
    train_model,
    warn,
)

# Old spellings, kept working (with a warning) for one release.
alias("train title", "--out", "--output")
alias("title", "--max-len", "--max-new-tokens")
alias("title", "--min-len", "--min-new-tokens")
alias("evaluate title", "--max-len", "--max-new-tokens")

# Articles handed to the generator at once when titling a stream.
CHUNK_ARTICLES = 64


class OutFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


@train_app.command("title")
def train_title(
    train: TrainDataOpt,
    output: ModelDirOpt,
    dev: DevDataOpt = None,
    model: StartModelOpt = None,
    from_scratch: FromScratchOpt = False,
    layers: LayersOpt = 4,
    hidden: HiddenOpt = 256,
    max_source_len: Annotated[int, typer.Option(
        "--max-source-len", min=1, help="Content tokens kept (the head of the article).")] = 256,
    max_target_len: Annotated[int, typer.Option(
        "--max-target-len", min=1, help="Title tokens kept in training (and generated at dev time).")] = 32,
    prior: Annotated[bool | None, typer.Option(
        "--prior/--no-prior", show_default=False,
        help="Add the title prior (the article's characters made likelier in its title, a learned "
        "weight each). Default: on from scratch; from -m, as that model has it (a plain "
        "checkpoint has none).")] = None,
    copy: Annotated[bool | None, typer.Option(
        "--copy/--no-copy", show_default=False,
        help="Add copying from the article (a pointer-generator: each title token may be copied "
        "from an article position it attends to, or generated). Default: on from scratch; from "
        "-m, as that model has it (a plain checkpoint has none).")] = None,
    label_smoothing: Annotated[float, typer.Option(
        "--label-smoothing", min=0, callback=below(1),
        help="Share of the loss spread evenly over the vocabulary instead of the gold token, "
        "0 <= E < 1 (0.1 gave small models from scratch +0.7 to +1.2 ROUGE-L on LCSTS).")] = 0.1,
    epochs: EpochsOpt = 3,
    batch_size: BatchSizeOpt = 16,
    lr: LrOpt = None,
    seed: SeedOpt = 42,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    eval_every: EvalEveryOpt = None,
    dev_limit: DevLimitOpt = None,
    grad_accum: GradAccumOpt = 1,
    ema: EmaOpt = 0.0,
    resume: ResumeOpt = False,
    keep_checkpoint: KeepCheckpointOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a UniLM title model (BERT with a prefix mask) and keep the best one by dev ROUGE-L.

    Pairs are TSV 'title<TAB>content' (LCSTS, CSL) or JSON lines {"title", "content"}; dev titles
    are decoded greedily. The learning rate defaults to 2e-5 from a checkpoint, 5e-4 from scratch.

    Examples:

        zhtext train title --train lcsts/train.tsv --dev lcsts/val.tsv -m bert-base-chinese -o title-model

        zhtext train title --train lcsts/train.tsv --dev lcsts/val.tsv --from-scratch -o small-title --max-seconds 600 --dev-limit 200

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.title import TitleGenerator, TitleTrainConfig

    train_model(TitleGenerator, TitleTrainConfig, locals(), "ROUGE-L")


@app.command("title")
def title(
    model: ModelOpt,
    source: Annotated[str, typer.Argument(
        help="Article file ('-' reads stdin): the whole file is one article unless --lines; "
        'JSON lines with a "content" field are one article per line.')] = "-",
    beam: BeamOpt = None,
    max_new_tokens: MaxNewTokensOpt = 32,
    min_new_tokens: MinNewTokensOpt = None,
    length_penalty: LengthPenaltyOpt = 1.0,
    no_repeat_ngram: NoRepeatNgramOpt = None,
    repetition_penalty: RepetitionPenaltyOpt = 1.0,
    sample: SampleOpt = None,
    top_k: TopKOpt = 0,
    top_p: TopPOpt = 1.0,
    temperature: TemperatureOpt = 1.0,
    seed: DecodeSeedOpt = None,
    lines: Annotated[bool, typer.Option("--lines", help="Each non-empty line is one article.")] = False,
    out_format: Annotated[OutFormat, typer.Option(
        "--format", help='text: one title per line; jsonl: {"title", "content"} per article (JSON '
        "input records keep their fields; a gold title moves to \"reference\").")] = OutFormat.text,
    output: OutputOpt = None,
    batch_size: BatchSizeOpt = 16,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write a headline for an article with a UniLM title model.

    Beam search (width 3) by default; --sample picks tokens at random instead.

    Examples:

        zhtext title article.txt -m title-model

        zhtext title news.txt --lines -m title-model --beam 5 --format jsonl -o titles.jsonl

        zhtext title article.txt -m title-model --sample --top-p 0.9 --seed 1
    """
    from zhtext.io.progress import Bar
    from zhtext.io.writing import atomic_output, check_output
    from zhtext.tasks.title import TitleGenerator
    from zhtext.tasks.titledata import read_articles

    decoding = decode_options(TitleGenerator, locals())
    articles = read_articles(source, lines=lines, encoding=encoding)
    first = next(articles, None)  # a missing or unreadable input fails before the model loads
    if first is None:  # an empty output, said so rather than left silent
        warn(f"no {'articles' if lines else 'article'} in {'<stdin>' if source == '-' else source}: "
             "nothing to title")
        with atomic_output(output):
            return
    check_output(output)  # before the model loads
    gen = TitleGenerator.load(model, device=device, batch_size=batch_size,
                              quantize=quantize and quantize.value)
    articles = itertools.chain([first], articles)
    with atomic_output(output) as handle, Bar(enabled=not quiet and output not in (None, "-"), unit="articles") as bar:
        task = bar.add("titling")
        while chunk := list(itertools.islice(articles, CHUNK_ARTICLES)):
            titles = gen.predict([text for text, _ in chunk], decoding)
            for (text, record), headline in zip(chunk, titles):
                if out_format is OutFormat.text:
                    handle.write(headline + "\n")
                    continue
                if record is None:
                    record = {"content": text}
                elif "title" in record:
                    record = {**record, "reference": record["title"]}
                handle.write(json.dumps({**record, "title": headline}, ensure_ascii=False) + "\n")
            handle.flush()
            bar.advance(task, len(chunk))


@evaluate_app.command("title")
def evaluate_title(
    model: ModelOpt,
    data: Annotated[str, typer.Option(
        "--data", help="Gold pairs: TSV 'title<TAB>content' or JSONL.", show_default=False)],
    beam: BeamOpt = None,
    max_new_tokens: MaxNewTokensOpt = 32,
    min_new_tokens: MinNewTokensOpt = None,
    length_penalty: LengthPenaltyOpt = 1.0,
    no_repeat_ngram: NoRepeatNgramOpt = None,
    repetition_penalty: RepetitionPenaltyOpt = 1.0,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    batch_size: BatchSizeOpt = 16,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,  # taken by every command; nothing here to silence
) -> None:
    """Score a title model: character ROUGE-1/2/L F1 and BLEU averaged over articles, and speed.

    Example:

        zhtext evaluate title -m title-model --data csl/val.tsv --beam 3
    """
    from zhtext.tasks.title import TitleGenerator
    from zhtext.tasks.titledata import read_pairs

    decoding = decode_options(TitleGenerator, locals())
    pairs = read_pairs(data)[:limit]  # a bad --data file fails before the model loads
    gen = TitleGenerator.load(model, device=device, batch_size=batch_size)
    scores = gen.evaluate(pairs, decoding)
    if as_json:
        echo(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()}))
        return
    table = Table(title=f"{model} on {data} (beam {decoding.beam})")
    for column in ("ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU", "articles", "articles/s"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{100 * scores[k]:.2f}" for k in ("rouge-1", "rouge-2", "rouge-l", "bleu")),
                  str(scores["count"]), f"{scores['articles_per_s']:.2f}")
    console.print(table)
