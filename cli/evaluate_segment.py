"""``zhtext evaluate segment``: SIGHAN bakeoff scores of a segmentation against gold."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated

import typer
from rich.markup import escape

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import score_segmentation
from zhtext.io.reading import iter_lines

from .base import EncodingOpt, HmmOpt, QuietOpt, console, echo, evaluate_app, warn

# How many mismatched line numbers the warning lists before "and N more".
SHOW_LINES = 20


@evaluate_app.command("segment")
def evaluate_segment(
    gold: Annotated[
        str,
        typer.Option(
            "--gold",
            help="Gold segmentation: one sentence per line, words separated by spaces "
            "(SIGHAN format, e.g. pku_test_gold.utf8). '-' reads stdin.",
            show_default=False,
        ),
    ],
    pred: Annotated[
        str | None,
        typer.Option(
            "--pred",
            help="Segmentation to score, line-parallel to the gold, words separated by spaces.",
        ),
    ] = None,
    dict_: Annotated[
        str | None,
        typer.Option(
            "--dict",
            help="Instead of --pred: segment the gold's own text (spaces removed) with this "
            "lexicon (zhtext TSV or jieba dict file), as zhtext segment --dict does; 'jieba' "
            "means jieba's default dictionary.",
        ),
    ] = None,
    words: Annotated[
        str | None,
        typer.Option(
            "--words",
            help="Training word list, one word per line (e.g. pku_training_words.utf8): adds the "
            "OOV rate and OOV / IV recall.",
        ),
    ] = None,
    encoding: EncodingOpt = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the figures as one JSON object instead of the bakeoff table."),
    ] = False,
    hmm: HmmOpt = True,
    quiet: QuietOpt = False,
) -> None:
    """Score a word segmentation against gold with the SIGHAN 2005 bakeoff figures.

    A word is correct when the same character span is a word in both; precision, recall and F follow, and with --words the OOV rate and OOV / IV recall too. The figures go to stdout in the layout of the bakeoff's score script. A line whose characters differ from the gold's counts as wrong and is named in a warning on stderr.

    Example, jieba's dictionary on the SIGHAN 2005 PKU test set:

        zhtext evaluate segment --gold pku_test_gold.utf8 --words pku_training_words.utf8 --dict jieba
    """
    if (pred is None) == (dict_ is None):
        raise ZhtextError("give exactly one of --pred (a segmented file) or --dict (a lexicon to segment with)")
    if gold == "-" and pred == "-":
        raise ZhtextError("--gold and --pred cannot both read stdin ('-')")
    train_words = None if words is None else list(iter_lines(words, encoding))
    if pred is not None:
        source = pred
        score = score_segmentation(iter_lines(gold, encoding), iter_lines(pred, encoding), train_words)
    else:
        from zhtext.lexical.segment import Segmenter

        gold_lines = list(iter_lines(gold, encoding))
        source = f"--dict {dict_}"
        status = f"segmenting {len(gold_lines):,} gold lines with {escape(dict_)}"
        with console.status(status) if not quiet else contextlib.nullcontext():
            segmenter = Segmenter(None if dict_ == "jieba" else dict_, hmm=hmm)
            cut = segmenter.cut_lines(["".join(line.split()) for line in gold_lines])
        score = score_segmentation(gold_lines, (" ".join(tokens) for tokens in cut), train_words)

    if score.mismatched_lines:
        shown = ", ".join(map(str, score.mismatched_lines[:SHOW_LINES]))
        more = len(score.mismatched_lines) - SHOW_LINES
        warn(f"{len(score.mismatched_lines)} line(s) differ from the gold in their characters and "
             f"count as wrong: {shown}" + (f" and {more} more" if more > 0 else ""))
    if not quiet:
        console.print(f"[dim]scored {escape(source)} against the gold: {score.lines:,} lines[/]", highlight=False)
    echo(json.dumps(score.as_dict(), ensure_ascii=False) if as_json else score.format())
