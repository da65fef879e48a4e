"""``zhtext segment``: split text into words, one output line per input line."""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zhtext.io.progress import Bar
from zhtext.io.reading import batched_lines, iter_lines
from zhtext.io.writing import atomic_output
from zhtext.lexical.choices import MODES

from .base import (
    DictOpt,
    EncodingOpt,
    HmmOpt,
    JobsOpt,
    OutputOpt,
    QuietOpt,
    TextFormat,
    UserDictOpt,
    alias,
    app,
    console,
)

if TYPE_CHECKING:
    from zhtext.lexical.segment import Segmenter

alias("segment", "--out", "--output")

Mode = Enum("Mode", {name: name for name in MODES}, type=str)


@app.command()
def segment(
    file: str = typer.Argument("-", help="Text file to segment; '-' or nothing reads stdin."),
    dictionary: DictOpt = None,
    user_dict: UserDictOpt = None,
    output: OutputOpt = None,
    sep: str = typer.Option(
        " ",
        "--sep",
        help="Put this between words (a tab: --sep $'\\t').",
        show_default="space",
    ),
    pos: Annotated[
        bool,
        typer.Option("--pos", help="Tag parts of speech as jieba.posseg does: 'word/tag' tokens."),
    ] = False,
    out_format: Annotated[
        TextFormat,
        typer.Option(
            "--format",
            help='text: tokens joined by --sep; jsonl: {"tokens": [...]} per line '
            "(\\[word, tag] pairs with --pos).",
        ),
    ] = TextFormat.text,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
    # jieba's ways of cutting
    hmm: HmmOpt = True,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode",
            help="default: jieba.cut; search: also the dictionary words inside long "
            "words (jieba.cut_for_search); all: every dictionary word, overlapping "
            "(jieba.cut with cut_all=True).",
        ),
    ] = Mode.default,  # type: ignore[attr-defined]
    offsets: Annotated[
        bool,
        typer.Option(
            "--offsets",
            help="One JSON object per line instead: "
            '{"tokens": \\[\\[word, start, end], ...]}, offsets in characters from the '
            "line's start, as jieba.tokenize (not with --mode all).",
        ),
    ] = False,
    jobs: JobsOpt = None,
) -> None:
    """Segment text into words as jieba does: dictionary route, HMM for unknown words.

    Output is the same as jieba.cut(line) (--no-hmm: jieba.cut(line, HMM=False)).
    Each input line becomes one output line, its words joined by --sep (--offsets: one JSON line).
    With --pos, tokens are word/tag, the same as jieba.posseg.cut(line, HMM=...).
    Big files stream on all cores (--jobs), the output in input order; -o files appear whole or
    not at all.

    Example: zhtext segment novel.txt --dict lexicon.tsv -o novel.seg.txt
    """
    if offsets and mode.value == "all":
        raise typer.BadParameter(
            "full mode's words overlap and have no offsets (jieba.tokenize has no such mode): "
            "use --mode default or search",
            param_hint="--offsets",
        )
    if pos and (offsets or mode.value != "default"):
        raise typer.BadParameter(
            "part-of-speech tags come with the default mode's words only (as jieba.posseg)",
            param_hint="--pos",
        )
    from zhtext.lexical.parallel import check_jobs, ordered_map  # the kernels load here
    from zhtext.lexical.segment import BATCH_CHARS, Segmenter

    segmenter = Segmenter(dictionary, user_dict=user_dict, hmm=hmm)
    jobs = check_jobs(jobs)
    to_terminal = output in (None, "-") and sys.stdout.isatty()
    show = not quiet and file != "-" and not to_terminal and console.is_terminal
    size = Path(file).stat().st_size if show and Path(file).is_file() else None
    with Bar(enabled=show, unit="bytes") as bar:
        task = bar.add("segmenting", total=size)

        def advance(block: str | bytes) -> None:
            if size is None:
                return
            if isinstance(block, str):  # UTF-8 bytes approximate the file's bytes well enough
                block = block.encode("utf-8", "surrogatepass")
            bar.advance(task, len(block))

        if not (offsets or pos or out_format is TextFormat.jsonl):
            segmenter.segment_file(
                file, output, sep, mode=mode.value, jobs=jobs, encoding=encoding, progress=advance
            )
            return
        lines = iter_lines(file, encoding)

        def render(batch: list[str]) -> tuple[list[str], list[str]]:
            if offsets:
                tokens = segmenter.tokenize_lines(batch, mode.value)
                return batch, [json.dumps({"tokens": t}, ensure_ascii=False) for t in tokens]
            tokens = _tokens(segmenter, batch, pos, mode.value)
            return batch, [_render(t, pos, out_format, sep) for t in tokens]

        batches = ordered_map(render, batched_lines(lines, BATCH_CHARS), jobs)
        with atomic_output(output) as handle, contextlib.closing(batches):
            for batch, rendered in batches:
                handle.write("\n".join(rendered))
                handle.write("\n")
                if size is not None:
                    advance("\n".join(batch) + "\n")


def _tokens(segmenter: Segmenter, batch: list[str], pos: bool, mode: str) -> list[list]:
    return segmenter.tag_lines(batch) if pos else segmenter.cut_lines(batch, mode=mode)


def _render(tokens: list, pos: bool, out_format: TextFormat, sep: str) -> str:
    """One output line: a JSON object, or the tokens joined by ``sep`` (``word/tag`` with --pos,
    as jieba's ``pair`` prints and the People's Daily corpus writes)."""
    if out_format is TextFormat.jsonl:
        return json.dumps({"tokens": tokens}, ensure_ascii=False)
    return sep.join(f"{w}/{t}" for w, t in tokens) if pos else sep.join(tokens)
