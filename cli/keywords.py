"""``zhtext keywords``: the keywords of a text by TF-IDF or TextRank, as jieba.analyse gives them."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TaskID

from zhtext.io.progress import Bar
from zhtext.io.reading import iter_lines
from zhtext.io.writing import atomic_output
from zhtext.lexical.choices import MAX_TERMS

from .base import (
    DictOpt,
    EncodingOpt,
    HmmOpt,
    OutputOpt,
    QuietOpt,
    TextFormat,
    UserDictOpt,
    app,
    console,
)


class Method(str, Enum):
    tfidf = "tfidf"
    textrank = "textrank"


def _pos_list(value: str | None) -> tuple[str, ...] | None:
    """``ns,n,vn,v`` as a tuple of tags (jieba's tags are lowercase letters)."""
    if value is None:
        return None
    tags = tuple(tag.strip() for tag in value.split(",") if tag.strip())
    bad = [tag for tag in tags if not re.fullmatch(r"[a-z]+", tag)]
    if bad:
        raise typer.BadParameter(f"must be tags such as ns,n,vn,v, got {bad[0]!r}")
    return tags


@app.command()
def keywords(
    file: Annotated[
        str, typer.Argument(help="Text file; '-' or nothing reads stdin.")
    ] = "-",
    top: Annotated[
        int, typer.Option("--top", min=0, help="Keywords per text (0: all).")
    ] = 20,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="tfidf: jieba.analyse.extract_tags; textrank: jieba.analyse.textrank.",
        ),
    ] = Method.tfidf,
    pos: Annotated[
        str | None,
        typer.Option(
            "--pos",
            callback=_pos_list,
            show_default=False,
            help="Keep words of these POS tags only, e.g. ns,n,vn,v (default: all for tfidf, "
            "ns,n,vn,v for textrank).",
        ),
    ] = None,
    idf: Annotated[
        Path | None,
        typer.Option(
            "--idf",
            help="IDF table, 'word idf' lines (default: jieba's idf.txt).",
            show_default=False,
        ),
    ] = None,
    idf_from: Annotated[
        list[Path] | None,
        typer.Option(
            "--idf-from",
            metavar="CORPUS",
            show_default=False,
            help="Build the IDF table from this corpus, each non-blank line a document (repeat for "
            "several files).",
        ),
    ] = None,
    save_idf: Annotated[
        Path | None,
        typer.Option(
            "--save-idf",
            help="Also write the table built by --idf-from here, for --idf later.",
        ),
    ] = None,
    max_terms: Annotated[
        int,
        typer.Option(
            "--max-terms",
            min=1,
            help="--idf-from: most distinct words held; the rarest are pruned beyond.",
        ),
    ] = MAX_TERMS,
    stop_words: Annotated[
        Path | None,
        typer.Option(
            "--stop-words", help="Stop words, one per line, added to jieba's list."
        ),
    ] = None,
    with_weight: Annotated[
        bool, typer.Option("--with-weight", help="Print each keyword's weight.")
    ] = False,
    lines: Annotated[
        bool,
        typer.Option(
            "--lines",
            help="Each line is a text: one output line per input line (default: the whole "
            "file is one text).",
        ),
    ] = False,
    dictionary: DictOpt = None,
    user_dict: UserDictOpt = None,
    hmm: HmmOpt = True,
    output: OutputOpt = None,
    out_format: Annotated[
        TextFormat,
        typer.Option(
            "--format",
            help="text: a keyword per line (with --lines: a line's keywords on one line); "
            'jsonl: {"keywords": [...]} per text.',
        ),
    ] = TextFormat.text,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The keywords of a text: jieba.analyse's TF-IDF or TextRank, same words, order and weights.

    TF-IDF weighs a word by its count times its IDF (jieba's table, or one built from your corpus
    with --idf-from); TextRank ranks the nouns and verbs of a co-occurrence graph.
    Text output: 'word' or 'word<TAB>weight' lines; with --lines, 'word word' or
    'word:weight word:weight' per input line.

    Example: zhtext keywords data/corpus.txt --top 10 --with-weight
    """
    if idf is not None and idf_from:
        raise typer.BadParameter("--idf and --idf-from do not mix: choose one")
    if method is Method.textrank and (idf or idf_from or save_idf):
        raise typer.BadParameter(
            "--idf, --idf-from and --save-idf are for --method tfidf"
        )
    if save_idf is not None and not idf_from:
        raise typer.BadParameter("--save-idf needs --idf-from")
    # A missing or unreadable input fails here, before any table is loaded.
    texts = iter_lines(file, encoding)
    # the kernels load here, not for --help
    from zhtext.lexical.keywords import IDFTable, KeywordExtractor, build_idf
    from zhtext.lexical.segment import Segmenter

    segmenter = Segmenter(dictionary, user_dict=user_dict, hmm=hmm)
    table = IDFTable.load(idf) if method is Method.tfidf and not idf_from else None
    if idf_from:
        table = build_idf(
            idf_from,
            segmenter,
            encoding=encoding,
            max_terms=max_terms,
            progress=not quiet,
        )
        if save_idf is not None:
            table.save(save_idf)
    extract = KeywordExtractor(
        method.value,
        allow_pos=pos,
        idf=table,
        stop_words=stop_words,
        segmenter=segmenter,
    )
    # No bar over --lines output on a terminal: the lines are the progress.
    to_terminal = output in (None, "-") and sys.stdout.isatty()
    show = not quiet and console.is_terminal and not (lines and to_terminal)
    with atomic_output(output) as handle, Bar(enabled=show, unit="bytes") as bar:
        if show and Path(file).is_file():
            task = bar.add("keywords", total=Path(file).stat().st_size)
            texts = _advancing(texts, bar, task)
        if lines:
            for text in texts:
                found = extract(text, top, with_weight)
                handle.write(_format(found, out_format, " ", ":"))
        else:
            found = extract.extract_lines(texts, top, with_weight)
            handle.write(_format(found, out_format, "\n", "\t"))


def _advancing(texts: Iterable[str], bar: Bar, task: TaskID | None) -> Iterator[str]:
    for text in texts:
        yield text
        bar.advance(task, len(text.encode("utf-8", "surrogatepass")) + 1)


def _format(found: list, out_format: TextFormat, sep: str, mark: str) -> str:
    """One text's keywords: a JSON line, or the words (``word{mark}weight``) joined by
    ``sep``; weights in Python's shortest exact form."""
    if out_format is TextFormat.jsonl:
        return json.dumps({"keywords": found}, ensure_ascii=False) + "\n"
    words = [w if isinstance(w, str) else f"{w[0]}{mark}{w[1]!r}" for w in found]
    text = sep.join(words)
    return text + "\n" if text or sep == " " else ""
