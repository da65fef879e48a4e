"""zhtext CLI: ``train title``, ``title`` and ``evaluate title`` (UniLM headline generation)."""

from __future__ import annotations

import itertools
import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from .base import (
    DeviceOpt,
    EncodingOpt,
    GradAccumOpt,
    HiddenOpt,
    LayersOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    OutputOpt,
    ResumeOpt,
    SeedOpt,
    app,
    check_model_or_scratch,
    console,
    evaluate_app,
    train_app,
)

# Articles handed to the generator at once when titling a stream.
CHUNK_ARTICLES = 64


class OutFormat(str, Enum):
    text = "text"
    jsonl = "jsonl"


Beam = Annotated[int, typer.Option("--beam", help="Beam width (1: greedy).")]
MaxLen = Annotated[int, typer.Option("--max-len", help="Most title tokens to generate.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Articles decoded together.")]
NoRepeat = Annotated[int, typer.Option(
    "--no-repeat-ngram", help="Never repeat N tokens in a row within a title (0: off; 3 is usual "
    "for summaries).")]


@train_app.command("title")
def train_title(
    train: Annotated[str, typer.Option(
        "--train", help="Training pairs: TSV 'title<TAB>content' (LCSTS, CSL) or JSONL "
        '{"title", "content"}.', show_default=False)],
    out: Annotated[str, typer.Option(
        "--out", help="Folder for the model (Hugging Face layout + zhtext.json); the best model "
        "by dev ROUGE-L is kept here.", show_default=False)],
    dev: Annotated[str | None, typer.Option(
        "--dev", help="Dev pairs, same formats: greedy ROUGE-L after each epoch picks the best model.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="BERT checkpoint with a masked-LM head: hub id (bert-base-chinese) or "
        "local directory.")] = None,
    from_scratch: Annotated[bool, typer.Option(
        "--from-scratch", help="Build a small BERT over a character vocabulary of the training data.")] = False,
    layers: LayersOpt = 4,
    hidden: HiddenOpt = 256,
    max_source_len: Annotated[int, typer.Option(
        "--max-source-len", help="Content tokens kept (the head of the article).")] = 256,
    max_target_len: Annotated[int, typer.Option(
        "--max-target-len", help="Title tokens kept in training (and generated at dev time).")] = 32,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training data.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Pairs per batch.")] = 16,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Learning rate (default: 2e-5 pretrained, 5e-4 from scratch).")] = None,
    seed: SeedOpt = 42,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    dev_limit: Annotated[int | None, typer.Option(
        "--dev-limit", help="Score only the first N dev pairs at each evaluation.")] = None,
    grad_accum: GradAccumOpt = 1,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train a UniLM title model (BERT with a prefix mask) and keep the best one by dev ROUGE-L.

    Examples:

        zhtext train title --train lcsts/train.tsv --dev lcsts/val.tsv --model bert-base-chinese --out title-model

        zhtext train title --train lcsts/train.tsv --dev lcsts/val.tsv --from-scratch --out small-title --max-seconds 600 --dev-limit 200

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.titledata import read_pairs
    from zhtext.tasks.title import TitleGenerator

    check_model_or_scratch(model, from_scratch)
    train_pairs = read_pairs(train)
    dev_pairs = read_pairs(dev) if dev else None
    console.print(f"training on {len(train_pairs)} pairs"
                  + (f", evaluating on {len(dev_pairs[:dev_limit])}" if dev_pairs else ""))
    gen = TitleGenerator.train(
        train_pairs, dev_pairs, out_dir=out, model=model, layers=layers, hidden=hidden,
        max_source_len=max_source_len, max_target_len=max_target_len, epochs=epochs,
        batch_size=batch_size, lr=lr, seed=seed, max_seconds=max_seconds, max_steps=max_steps,
        dev_limit=dev_limit, grad_accum=grad_accum, resume=resume, device=device,
    )
    best = gen.meta.get("best") or {}
    summary = f"model saved to {out}"
    if "rouge-l" in best:
        summary += f" (best dev ROUGE-L {best['rouge-l']:.4f} at epoch {best['epoch']})"
    console.print(summary)


@app.command("title")
def title(
    source: Annotated[str, typer.Argument(
        help="Article file ('-' reads stdin): the whole file is one article unless --lines; "
        'JSON lines with a "content" field are one article per line.')] = "-",
    model: Annotated[str, typer.Option(
        "--model", help="Title model directory (from 'zhtext train title').", show_default=False)] = ...,
    beam: Beam = 3,
    max_len: MaxLen = 32,
    min_len: Annotated[int, typer.Option("--min-len", help="Fewest title tokens.")] = 0,
    length_penalty: Annotated[float, typer.Option(
        "--length-penalty", help="Beam score = log-prob / length ** this (> 1 favours longer titles).")] = 1.0,
    no_repeat_ngram: NoRepeat = 0,
    sample: Annotated[bool, typer.Option("--sample", help="Sample instead of beam search.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", help="Sampling: keep the K likeliest tokens (0: all).")] = 0,
    top_p: Annotated[float, typer.Option(
        "--top-p", help="Sampling: keep the smallest set of tokens with this much probability.")] = 1.0,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature.")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampling: random seed.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Each non-empty line is one article.")] = False,
    out_format: Annotated[OutFormat, typer.Option(
        "--format", help='text: one title per line; jsonl: {"title", "content"} per article (JSON '
        "input records keep their fields; a gold title moves to \"reference\").")] = OutFormat.text,
    output: OutputOpt = None,
    batch_size: BatchSize = 16,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Write a headline for an article with a UniLM title model.

    Examples:

        zhtext title article.txt --model title-model

        zhtext title news.txt --lines --model title-model --beam 5 --format jsonl

        zhtext title article.txt --model title-model --sample --top-p 0.9 --seed 1
    """
    from zhtext.io.writing import atomic_output
    from zhtext.io.progress import Bar
    from zhtext.tasks.titledata import read_articles
    from zhtext.tasks.title import TitleGenerator

    options = {"beam": beam, "max_len": max_len, "min_len": min_len, "length_penalty": length_penalty,
               "sample": sample, "top_k": top_k, "top_p": top_p, "temperature": temperature, "seed": seed,
               "no_repeat_ngram": no_repeat_ngram}
    TitleGenerator.options(**options)  # bad values fail before anything is read or loaded
    articles = read_articles(source, lines=lines, encoding=encoding)
    first = next(articles, None)  # a missing or unreadable input fails before the model loads
    gen = TitleGenerator.load(model, device=device, batch_size=batch_size)
    articles = itertools.chain([first] if first is not None else [], articles)
    with atomic_output(output) as handle, Bar(enabled=output not in (None, "-"), unit="articles") as bar:
        task = bar.add("titling")
        while chunk := list(itertools.islice(articles, CHUNK_ARTICLES)):
            titles = gen.generate([text for text, _ in chunk], **options)
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
    model: Annotated[str, typer.Option("--model", help="Title model directory.", show_default=False)],
    data: Annotated[str, typer.Option(
        "--data", help="Gold pairs: TSV 'title<TAB>content' or JSONL.", show_default=False)],
    beam: Beam = 3,
    max_len: MaxLen = 32,
    no_repeat_ngram: NoRepeat = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N pairs.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the figures as one JSON object instead of a table.")] = False,
    batch_size: BatchSize = 16,
    device: DeviceOpt = None,
) -> None:
    """Score a title model: character ROUGE-1/2/L F1 and BLEU averaged over articles, and speed.

    Example:

        zhtext evaluate title --model title-model --data csl/val.tsv --beam 3
    """
    from zhtext.tasks.titledata import read_pairs
    from zhtext.tasks.title import TitleGenerator

    pairs = read_pairs(data)[:limit]  # a bad --data file fails before the model loads
    gen = TitleGenerator.load(model, device=device, batch_size=batch_size)
    scores = gen.evaluate(pairs, beam=beam, max_len=max_len, no_repeat_ngram=no_repeat_ngram)
    if as_json:
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in scores.items()}))
        return
    table = Table(title=f"{model} on {data} (beam {beam})")
    for column in ("ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU", "articles", "articles/s"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{100 * scores[k]:.2f}" for k in ("rouge-1", "rouge-2", "rouge-l", "bleu")),
                  str(scores["count"]), f"{scores['articles_per_s']:.2f}")
    console.print(table)
