"""``zhtext pipe``: several models over one corpus in one streaming pass."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from .base import DeviceOpt, EncodingOpt, QuietOpt, app, console
from .embed import Pooling

if TYPE_CHECKING:
    from zhtext.pipeline.core import Report

# Line numbers shown per kind of bad line; all of them are in the records' "problems"/"error".
SHOWN_LINES = 10


def _summary(report: Report, quiet: bool) -> None:
    if not quiet:
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.timings.items())
        console.print(
            f"[dim]{report.docs:,} documents in {report.seconds:.1f} s "
            f"({report.docs_per_s:,.1f} docs/s): {steps}[/]",
            highlight=False,
        )
    groups = report.grouped()
    if not groups:
        return
    lines = len({line for numbers in groups.values() for line in numbers})
    console.print(
        f"[yellow]{lines:,} bad line(s)[/], none dropped: each record says its \"problems\" "
        '(or "error" when it could not be read):',
        highlight=False,
        soft_wrap=True,
    )
    for kind, numbers in groups.items():
        shown = ", ".join(map(str, numbers[:SHOWN_LINES])) + (", ..." if len(numbers) > SHOWN_LINES else "")
        # soft_wrap: one line per kind, whole, so a log of the run can be grepped
        console.print(f"  {escape(kind)}: {len(numbers):,} line(s): {shown}", highlight=False, soft_wrap=True)


@app.command("pipe")
def pipe(
    source: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="Documents, one per line; '-' reads stdin.")
    ] = "-",
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            help="Comma-separated steps, run in this order: segment, tag, title, generate, embed.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="JSONL output, one record per input line (default: stdout)."
        ),
    ] = None,
    vectors: Annotated[
        str | None,
        typer.Option(
            "--vectors",
            help="Write the embed step's vectors here (.npy, row i = line i+1; a .json of settings "
            "beside it for 'zhtext similar') instead of into the JSONL.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of settings (steps, models, options; the option names with _ for -). "
            "Options given on the command line win over it; --steps narrows it to those steps.",
        ),
    ] = None,
    save_config: Annotated[
        Path | None,
        typer.Option(
            "--save-config", help="Write the run's full settings to this TOML file, then run."
        ),
    ] = None,
    dictionary: Annotated[
        str | None,
        typer.Option(
            "--dict", help="segment: dictionary, TSV lexicon or jieba format (default: jieba's)."
        ),
    ] = None,
    user_dict: Annotated[
        str | None, typer.Option("--user-dict", help="segment: jieba user dictionary on top.")
    ] = None,
    tag_model: Annotated[
        str | None, typer.Option("--tag-model", help="tag: tagger directory ('zhtext train tagger').")
    ] = None,
    title_model: Annotated[
        str | None, typer.Option("--title-model", help="title: UniLM title model directory.")
    ] = None,
    gpt_model: Annotated[
        str | None, typer.Option("--gpt-model", help="generate: GPT-2 directory or hub id.")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", help="generate: most tokens to add [default: 64].")
    ] = None,
    embed_model: Annotated[
        str | None,
        typer.Option("--embed-model", help="embed: encoder directory or hub id (bert-base-chinese)."),
    ] = None,
    whitening: Annotated[
        str | None,
        typer.Option(
            "--whitening", help="embed: a whitening saved by 'zhtext embed --save-whitening'."
        ),
    ] = None,
    pooling: Annotated[
        Pooling | None,
        typer.Option(
            "--pooling", help="embed: how token vectors make the sentence's [default: first-last-avg]."
        ),
    ] = None,
    max_len: Annotated[
        int | None,
        typer.Option("--max-len", help="embed: longest input in tokens; longer is cut [default: 256]."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Documents per batch through all steps; the models sort each batch by length, so "
            "bigger batches pad less [default: 1024].",
        ),
    ] = None,
    device: DeviceOpt = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Stop at the first bad line (unreadable, empty, longer than a model's window) "
            "instead of reporting it at the end.",
        ),
    ] = False,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run several steps over each line in one pass, each model loaded once.

    Each input line gives one JSON record: {"line", "text", "words", "spans", "title", "generated", "vector"}, with the fields of the steps that ran, as the standalone commands print them. A bad line is never dropped: an unreadable one is kept as a record with "error" (and a zero vector), an empty or too long one is processed as the standalone command does and gets "problems"; all are listed with their line numbers at the end. --strict stops at the first instead.

    Examples:

        zhtext pipe news.txt --steps segment,tag,embed --tag-model ner --embed-model bert-base-chinese --whitening w.npz -o news.jsonl --vectors news.npy --save-config news.toml

        zhtext pipe more-news.txt --config news.toml -o more.jsonl --vectors more.npy

        zhtext pipe more-news.txt --config news.toml --steps segment -o words.jsonl
    """
    from zhtext.pipeline.core import Lines, Pipeline
    from zhtext.io.progress import Bar

    given = {
        "steps": steps, "dict": dictionary, "user_dict": user_dict, "tag_model": tag_model,
        "title_model": title_model, "gpt_model": gpt_model, "max_new_tokens": max_new_tokens,
        "embed_model": embed_model, "whitening": whitening, "pooling": pooling and pooling.value,
        "embed_max_len": max_len, "batch_size": batch_size, "device": device,
    }  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}  # only the options given
    lines = Lines(source, encoding)  # a missing or unreadable input fails before the models load
    with console.status("loading models") if not quiet else contextlib.nullcontext():
        if config is not None:
            nlp = Pipeline.from_config(config, **given)
        else:
            nlp = Pipeline(given.pop("steps", None), **given)
    if save_config is not None:
        nlp.save_config(save_config)
        if not quiet:
            console.print(f"[dim]settings saved to {escape(str(save_config))}[/]", highlight=False)
    with Bar(enabled=not quiet and output not in (None, "-"), unit="bytes") as bar:
        task = bar.add("+".join(nlp.settings["steps"]), total=lines.size)
        done = 0

        def advance(_doc: object, end: int) -> None:
            nonlocal done
            bar.advance(task, end - done)
            done = end

        report = nlp.run(lines, output, vectors, strict=strict, on_doc=advance)
    _summary(report, quiet)
