"""Unsupervised word discovery scored on the SIGHAN 2005 PKU test set.

zhtext discovers a lexicon from the raw test text alone (no gold, no dictionary) with its default
settings, writes it as a TSV lexicon, segments the same text with that file the way
`zhtext segment --dict` does, and scores the result against the gold with the bakeoff's figures
(`zhtext evaluate segment`), OOV measured against the PKU training word list. The defaults were
tuned on gold lines 1-1000 only, so F is also printed for those lines and for lines 1001-end
(held out). The main row segments with the lexicon alone (HMM off: nothing but the raw text is
used); a second row adds jieba's HMM (``zhtext segment``'s default; its tables were trained on
labelled text). Reference row: jieba's default dictionary with HMM off on the same text.

Anchors (2 cores, same data): jieba default dictionary F 0.836; Su Jianlin's nlp-zero
minimum-entropy Word_Finder F 0.680 at its best setting tuned on the gold, 0.356 with defaults.

    python benchmarks/discover_quality.py [--quick]      # --quick skips the jieba row

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_files, emit_json  # noqa: E402

from zhtext.lexical.discover import Discoverer  # noqa: E402
from zhtext.io.reading import iter_lines  # noqa: E402
from zhtext.eval.metrics import SegScore, score_segmentation  # noqa: E402
from zhtext.lexical.segment import Segmenter  # noqa: E402

TUNE_LINES = 1000  # the only gold lines the defaults were tuned on


def score_parts(gold: list[str], pred: list[str], words: list[str]) -> dict[str, SegScore]:
    """Scores on all lines, on the tuning lines and on the held-out lines."""
    return {
        "all": score_segmentation(gold, pred, words),
        f"1-{TUNE_LINES}": score_segmentation(gold[:TUNE_LINES], pred[:TUNE_LINES], words),
        f"{TUNE_LINES + 1}-end": score_segmentation(gold[TUNE_LINES:], pred[TUNE_LINES:], words),
    }


def print_rows(name: str, parts: dict[str, SegScore]) -> None:
    for part, s in parts.items():
        print(
            f"{name:<18} {part:<10} {s.lines:>6} {s.f:6.3f} {s.p:6.3f} {s.r:6.3f} "
            f"{s.oov_recall:7.3f} {s.iv_recall:7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the jieba reference row")
    args = parser.parse_args()
    text_path, gold_path, words_path = data_files(
        "seg/pku_test.utf8", "seg/pku_test_gold.utf8", "seg/pku_training_words.utf8"
    )
    raw = list(iter_lines(text_path))
    gold = list(iter_lines(gold_path))
    words = list(iter_lines(words_path))

    discoverer = Discoverer()  # default settings: nothing here is tuned for this file
    begin = time.perf_counter()
    lexicon = discoverer.run(text_path)
    stats = discoverer.stats
    with tempfile.TemporaryDirectory(prefix="zhtext-bench-") as tmp:
        # Through a file, as `zhtext discover -o lex.tsv` then `zhtext segment --dict lex.tsv`.
        lex_path = Path(tmp) / "lex.tsv"
        lexicon.save(lex_path, "tsv")
        pred = Segmenter(lex_path, hmm=False).segment_lines(raw, " ")
        seconds = time.perf_counter() - begin
        pred_hmm = Segmenter(lex_path, hmm=True).segment_lines(raw, " ")
    ours = score_parts(gold, pred, words)
    ours_hmm = score_parts(gold, pred_hmm, words)

    print(
        f"corpus: {text_path.name}, {len(raw):,} lines, {stats.han_chars:,} Han characters; "
        f"min_count {stats.min_count}, {stats.candidates:,} candidates, {stats.words:,} words "
        f"of 2+ characters; bits/char by pass: {', '.join(f'{b:.3f}' for b in stats.bits_per_char)}; "
        f"discover + segment {seconds:.2f} s"
    )
    print(f"{'system':<18} {'lines':<10} {'n':>6} {'F':>6} {'P':>6} {'R':>6} {'OOV-R':>7} {'IV-R':>7}")
    print_rows("zhtext discover", ours)
    print_rows("discover + HMM", ours_hmm)
    if ours["all"].mismatched_lines:
        print(f"warning: {len(ours['all'].mismatched_lines)} line(s) differ from the gold's characters")

    jieba_f1 = None
    if not args.quick:
        import jieba

        jieba.setLogLevel(60)
        jieba.initialize()
        jieba_pred = [" ".join(jieba.lcut(line, HMM=False)) for line in raw]
        theirs = score_parts(gold, jieba_pred, words)
        print_rows("jieba dict, no HMM", theirs)
        jieba_f1 = round(theirs["all"].f, 4)
    print("anchors: nlp-zero Word_Finder F 0.680 (tuned on the gold), 0.356 (defaults); target F >= 0.75")

    emit_json({
        "bench": "discover_quality",
        "f1": round(ours["all"].f, 4),
        "p": round(ours["all"].p, 4),
        "r": round(ours["all"].r, 4),
        "oov_recall": round(ours["all"].oov_recall, 4),
        "f1_tune_lines": round(ours[f"1-{TUNE_LINES}"].f, 4),
        "f1_heldout_lines": round(ours[f"{TUNE_LINES + 1}-end"].f, 4),
        "f1_hmm": round(ours_hmm["all"].f, 4),
        "jieba_f1": jieba_f1,
        "words": stats.words,
        "seconds": round(seconds, 2),
    })


if __name__ == "__main__":
    main()
