"""``zhtext discover``: unsupervised word discovery."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from zhtext.io.writing import atomic_output
from zhtext.lexical.choices import MAX_N
from zhtext.lexical.lexicon import FORMATS

from .base import (
    CpusPerWorkerOpt,
    EncodingOpt,
    OutputOpt,
    QuietOpt,
    RayOpt,
    WorkersOpt,
    alias,
    app,
    console,
)

if TYPE_CHECKING:
    from zhtext.lexical.discover import DiscoverStats

alias("discover", "--out", "--output")

LexiconFormat = Enum("LexiconFormat", {name: name for name in FORMATS}, type=str)


@app.command()
def discover(
    corpus: list[Path] = typer.Argument(
        ..., help="Text files to learn from (UTF-8 or GB18030; '-' reads stdin).", show_default=False
    ),
    output: OutputOpt = None,
    max_n: int = typer.Option(4, "--max-n", min=2, max=MAX_N, help="Longest n-gram counted."),
    min_count: int | None = typer.Option(
        None, "--min-count", min=1, help="Least count of a word; default scales with the corpus size."
    ),
    iterations: int = typer.Option(
        5, "--iterations", min=0, help="Most re-estimation passes (stops once bits/char stop falling)."
    ),
    fmt: LexiconFormat = typer.Option(
        "tsv", "--format", help="tsv (word<TAB>count) or jieba (word count: a jieba dictionary)."
    ),
    top: int | None = typer.Option(None, "--top", min=1, help="Write only the N most frequent entries."),
    min_len: int = typer.Option(
        1, "--min-len", min=1, help="Shortest entry written; 1 keeps single characters so that the "
        "lexicon segments on its own, 2 lists discovered words only."
    ),
    encoding: EncodingOpt = None,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1.0,
    quiet: QuietOpt = False,
) -> None:
    """Discover the words of a corpus by minimum entropy; write a lexicon, most frequent first.

    Counts n-grams, keeps the cohesive ones, and re-estimates a unigram model until the corpus
    takes the fewest bits per character. The lexicon can be used by `zhtext segment --dict` or
    loaded into jieba (`--format jieba`).

    With --ray the passes over the corpus run on a Ray cluster (files, directories and globs;
    each file read in 4 MiB splits by the workers) and give the same lexicon.

    Example: zhtext discover data/corpus.txt -o lexicon.tsv
    """
    from zhtext.distributed.discover import run_on_ray  # the kernels load here, not for --help
    from zhtext.lexical.discover import Discoverer

    finder = Discoverer(
        max_n=max_n, min_count=min_count, iterations=iterations, progress=not quiet
    )
    source = corpus[0] if len(corpus) == 1 else list(corpus)
    # Opened first, so that a bad output path fails before the run; the file appears only
    # once the whole lexicon is written.
    with atomic_output(output) as handle:
        if ray is None:
            lexicon = finder.run(source, encoding=encoding)
        else:
            lexicon = run_on_ray(finder, corpus, encoding, address=ray, workers=workers,
                                 cpus_per_worker=cpus_per_worker)
        if min_len > 1:
            lexicon.counts = {w: c for w, c in lexicon.counts.items() if len(w) >= min_len}
        for line in lexicon.lines(fmt.value, top):
            handle.write(line + "\n")
    if not quiet:
        _summary(finder.stats, lexicon.most_common(), output)


def _summary(stats: DiscoverStats, entries: list[tuple[str, int]], out: str | None) -> None:
    table = Table(title="zhtext discover", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("characters read", f"{stats.chars_read:,} ({stats.han_chars:,} Chinese)")
    table.add_row("min count", str(stats.min_count))
    kept = ", ".join(f"{n}: {k:,}" for n, k in stats.ngrams_kept.items())
    table.add_row("n-grams kept", kept)
    table.add_row("candidates", f"{stats.candidates:,}")
    table.add_row("words found", f"{stats.words:,} (plus single characters)")
    bits = " → ".join(f"{b:.3f}" for b in stats.bits_per_char)
    table.add_row("bits per char", bits)
    table.add_row("time", f"{stats.seconds:.1f} s ({stats.chars_read / max(stats.seconds, 1e-9) / 1e6:.2f} M chars/s)")
    table.add_row("peak memory", f"{stats.peak_mb:.0f} MB")
    words = [w for w, _ in entries if len(w) > 1][:12]
    table.add_row("top words", " ".join(words))
    if out not in (None, "-"):
        table.add_row("written to", str(out))
    console.print(table)
