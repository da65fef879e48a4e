"""``zhtext segment``: split text into words, one output line per input line."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from zhtext.io.progress import Bar
from zhtext.io.reading import iter_lines
from zhtext.io.writing import atomic_output
from zhtext.lexical.segment import Segmenter

from .base import (
    DictOpt,
    EncodingOpt,
    OutputOpt,
    QuietOpt,
    UserDictOpt,
    alias,
    app,
    console,
)

alias("segment", "--out", "--output")


@app.command()
def segment(
    file: str = typer.Argument("-", help="Text file to segment; '-' or nothing reads stdin."),
    dictionary: DictOpt = None,
    user_dict: UserDictOpt = None,
    output: OutputOpt = None,
    sep: str = typer.Option(
        " ", "--sep", help="Put this between words (a tab: --sep $'\\t').", show_default="space"
    ),
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Segment text into words: the most probable route through a unigram dictionary.

    Output is the same as jieba.cut(line, HMM=False), tens of times faster.
    Each input line becomes one output line, its words joined by --sep.
    Big files stream in batches; -o files appear whole or not at all.

    Example: zhtext segment novel.txt --dict lexicon.tsv -o novel.seg.txt
    """
    segmenter = Segmenter(dictionary, user_dict=user_dict)
    lines = iter_lines(file, encoding)
    to_terminal = output in (None, "-") and sys.stdout.isatty()
    show = not quiet and file != "-" and not to_terminal and console.is_terminal
    with atomic_output(output) as handle, Bar(enabled=show, unit="bytes") as bar:
        size = Path(file).stat().st_size if show and Path(file).is_file() else None
        task = bar.add("segmenting", total=size)
        for batch, segmented in segmenter.segment_batches(lines, sep):
            handle.write("\n".join(segmented))
            handle.write("\n")
            if size is not None:  # UTF-8 bytes approximate the file's bytes well enough
                bar.advance(task, sum(len(s.encode("utf-8", "surrogatepass")) + 1 for s in batch))
