"""Scores for zhtext's tasks: SIGHAN word segmentation, entity spans, character ROUGE/BLEU, Spearman.

Everything here is plain Python and numpy, so scoring never loads a model framework. Segmentation
follows the SIGHAN 2005 bakeoff (its ``score`` script's figures and layout); entity scores are exact
span matches; ROUGE and BLEU work on characters, the usual choice for Chinese titles; Spearman
matches ``scipy.stats.spearmanr`` (average ranks for ties).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import zip_longest

import numpy as np

from zhtext.errors import ZhtextError

__all__ = [
    "PRF",
    "SegScore",
    "average_rouge",
    "bleu_char",
    "entity_scores",
    "rouge_char",
    "score_segmentation",
    "spearman",
]


def _prf(correct: int, gold: int, predicted: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; a ratio with nothing to divide by is 0."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


# --------------------------------------------------------------------------- word segmentation


def _fmt(value: float | None) -> str:
    # The bakeoff script prints "--" for a rate it cannot compute.
    return "--" if value is None or math.isnan(value) else f"{value:.3f}"


@dataclass
class SegScore:
    """SIGHAN bakeoff figures of a segmentation against gold.

    ``oov_rate``, ``oov_recall`` and ``iv_recall`` are None without a training word list, and NaN
    when there is no OOV (or IV) gold word to recall. ``mismatched_lines`` holds the 1-based numbers
    of lines whose characters differ from the gold's (their words count, but none as correct).
    """

    p: float
    r: float
    f: float
    oov_rate: float | None
    oov_recall: float | None
    iv_recall: float | None
    gold_words: int
    pred_words: int
    correct: int
    lines: int
    mismatched_lines: list[int] = field(default_factory=list)

    def format(self) -> str:
        """The summary block of the bakeoff ``score`` script: same labels, tabs, three decimals."""
        rows = [
            ("TOTAL TRUE WORD COUNT", str(self.gold_words)),
            ("TOTAL TEST WORD COUNT", str(self.pred_words)),
            ("TOTAL TRUE WORDS RECALL", _fmt(self.r)),
            ("TOTAL TEST WORDS PRECISION", _fmt(self.p)),
            ("F MEASURE", _fmt(self.f)),
            ("OOV Rate", _fmt(self.oov_rate)),
            ("OOV Recall Rate", _fmt(self.oov_recall)),
            ("IV Recall Rate", _fmt(self.iv_recall)),
        ]
        return "\n".join(f"=== {label}:\t{value}" for label, value in rows)

    def as_dict(self) -> dict:
        """The figures as a plain dict (JSON-ready; NaN rates become None)."""
        out = asdict(self)
        for key in ("oov_rate", "oov_recall", "iv_recall"):
            if out[key] is not None and math.isnan(out[key]):
                out[key] = None
        return out


def _spans(words: list[str]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word)
    return spans


# Spans and the bakeoff's ``score`` script: the script diffs the gold and test word sequences of a
# line (``diff -y``) and counts the words on unchanged diff lines as correct. Words at equal spans
# form a common subsequence of both sequences (both are in text order), so a minimal diff never
# counts fewer; it counts more only by pairing equal strings at different offsets, i.e. a repeated
# word misplaced on both sides. PKU test line 842 has one: gold 零时 零 分 零五 秒,
# jieba 零时 零分 零 五秒, where diff pairs gold's first 零 with jieba's second. That is not a correctly found word, so spans
# are the intended definition. GNU diff is also not always minimal (it misses a match on line 1418).
# Net effect on PKU: jieba without HMM gets 84,986 correct words here and 84,988 from the script
# (three cross-offset pairings, one missed match); with HMM 82,099 here and 82,097 there. Every
# figure the script prints (three decimals) is the same in both runs.
def score_segmentation(
    gold_lines: Iterable[str],
    pred_lines: Iterable[str],
    train_words: Iterable[str] | None = None,
) -> SegScore:
    """Score a segmentation against gold the way the SIGHAN 2005 bakeoff does.

    Lines are paired one by one; words are separated by any whitespace. A predicted word is correct
    when the same character span (start, end) of its line is a gold word. P = correct / predicted
    words, R = correct / gold words, F = 2PR / (P + R). With ``train_words`` (the training word
    list), a gold word absent from it is OOV: ``oov_rate`` is their share of the gold words,
    ``oov_recall`` the share of them found, ``iv_recall`` the same for the other gold words.

    A line whose characters (separators removed) differ from the gold's is listed in
    ``mismatched_lines``: its words still count as gold and predicted words, but none of them as
    correct, because spans over two different strings do not name the same words. Counting them
    wrong rather than skipping them keeps a broken alignment from flattering the score.

    Raises ZhtextError when the two inputs have different numbers of lines, or the gold no words.
    """
    vocab = None if train_words is None else {w.strip() for w in train_words} - {""}
    n_gold = n_pred = 0
    gold_total = pred_total = correct = 0
    oov_total = oov_found = iv_found = 0
    mismatched: list[int] = []
    for gold, pred in zip_longest(gold_lines, pred_lines):
        n_gold += gold is not None
        n_pred += pred is not None
        if gold is None or pred is None:
            continue  # keep counting, to name both line counts in the error
        gold_words, pred_words = gold.split(), pred.split()
        gold_total += len(gold_words)
        pred_total += len(pred_words)
        if "".join(gold_words) == "".join(pred_words):
            pred_spans = set(_spans(pred_words))
            found = [span in pred_spans for span in _spans(gold_words)]
        else:
            mismatched.append(n_gold)
            found = [False] * len(gold_words)
        correct += sum(found)
        if vocab is not None:
            for word, hit in zip(gold_words, found):
                if word in vocab:
                    iv_found += hit
                else:
                    oov_total += 1
                    oov_found += hit
    if n_gold != n_pred:
        raise ZhtextError(f"the gold has {n_gold} lines but the segmentation has {n_pred}")
    if not gold_total:  # every figure would be a 0 that reads as a score
        raise ZhtextError(f"nothing to score: the gold {'has no words' if n_gold else 'is empty'}")
    p, r, f = _prf(correct, gold_total, pred_total)
    oov_rate = oov_recall = iv_recall = None
    if vocab is not None:
        iv_total = gold_total - oov_total
        oov_rate = oov_total / gold_total if gold_total else math.nan
        oov_recall = oov_found / oov_total if oov_total else math.nan
        iv_recall = iv_found / iv_total if iv_total else math.nan
    return SegScore(
        p=p, r=r, f=f, oov_rate=oov_rate, oov_recall=oov_recall, iv_recall=iv_recall,
        gold_words=gold_total, pred_words=pred_total, correct=correct, lines=n_gold,
        mismatched_lines=mismatched,
    )


# --------------------------------------------------------------------------- entity spans


@dataclass(frozen=True)
class PRF:
    """Precision, recall, F1 and support (the number of gold items) of one label."""

    p: float
    r: float
    f: float
    support: int


Span = tuple[int, int, str]


def entity_scores(
    gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]]
) -> dict[str, PRF]:
    """Exact-match entity scores: a predicted (start, end, label) is correct when the same
    sentence's gold has the identical triple.

    Returns one :class:`PRF` per label (sorted) plus ``"overall"``, the micro average over all
    labels. A span listed twice in one sentence counts once.
    """
    if len(gold) != len(pred):
        raise ZhtextError(f"entity_scores: {len(gold)} gold sentences but {len(pred)} predicted")
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_correct: Counter[str] = Counter()
    for gold_spans, pred_spans in zip(gold, pred):
        gold_set, pred_set = set(gold_spans), set(pred_spans)
        n_gold.update(label for _, _, label in gold_set)
        n_pred.update(label for _, _, label in pred_set)
        n_correct.update(label for _, _, label in gold_set & pred_set)
    scores = {
        label: PRF(*_prf(n_correct[label], n_gold[label], n_pred[label]), support=n_gold[label])
        for label in sorted(n_gold.keys() | n_pred.keys())
    }
    total_gold = sum(n_gold.values())
    overall = _prf(sum(n_correct.values()), total_gold, sum(n_pred.values()))
    scores["overall"] = PRF(*overall, support=total_gold)
    return scores


# --------------------------------------------------------------------------- ROUGE and BLEU


def _chars(text: str) -> str:
    return "".join(text.split())


def _ngrams(chars: str, n: int) -> Counter[str]:
    return Counter(chars[i : i + n] for i in range(len(chars) - n + 1))


def _overlap_f1(reference: str, hypothesis: str, n: int) -> float:
    ref, hyp = _ngrams(reference, n), _ngrams(hypothesis, n)
    overlap = sum((ref & hyp).values())
    return _prf(overlap, sum(ref.values()), sum(hyp.values()))[2]


def _lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence, bit-parallel over ``a`` (Crochemore et al. 2001).

    Bit i of ``v`` is 0 where the LCS row gains a step at position i of ``a``; each character of
    ``b`` updates every position at once with two big-integer operations, so long texts stay cheap.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_char(reference: str, hypothesis: str) -> dict[str, float]:
    """Character-level ROUGE-1, ROUGE-2 and ROUGE-L F1 of one hypothesis against one reference.

    Characters are the non-space characters of each text. ROUGE-N F1 is the harmonic mean of
    clipped n-gram overlap over the hypothesis's and the reference's n-gram counts; ROUGE-L uses
    the longest common subsequence over the two lengths. Empty texts score 0.
    """
    ref, hyp = _chars(reference), _chars(hypothesis)
    return {
        "rouge-1": _overlap_f1(ref, hyp, 1),
        "rouge-2": _overlap_f1(ref, hyp, 2),
        "rouge-l": _prf(_lcs_length(ref, hyp), len(ref), len(hyp))[2],
    }


# Chen & Cherry (2014) smoothing method 1, as nltk's SmoothingFunction().method1: an n-gram order
# with no match gets precision EPSILON / (hypothesis n-grams) instead of 0, so one missing 4-gram
# does not zero a short title's score.
BLEU_EPSILON = 0.1


def bleu_char(reference: str, hypothesis: str, max_n: int = 4) -> float:
    """Character-level sentence BLEU with uniform weights over 1..``max_n``-grams.

    Modified (clipped) n-gram precisions, geometric mean, brevity penalty exp(1 - r/c) when the
    hypothesis is not longer than the reference. Smoothing: an order with no matching n-gram
    counts ``BLEU_EPSILON`` matches (Chen & Cherry's method 1, the same as nltk's ``method1``);
    with no matching character at all the score is 0. Equal to
    ``nltk.translate.bleu_score.sentence_bleu([list(ref)], list(hyp), smoothing_function=method1)``.
    """
    if max_n < 1:
        raise ZhtextError(f"bleu_char: max_n must be at least 1, not {max_n}")
    ref, hyp = _chars(reference), _chars(hypothesis)
    if not hyp:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        hyp_grams = _ngrams(hyp, n)
        matches = sum((hyp_grams & _ngrams(ref, n)).values())
        if matches == 0 and n == 1:
            return 0.0
        total = max(1, sum(hyp_grams.values()))
        log_sum += math.log((matches or BLEU_EPSILON) / total)
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(log_sum / max_n)


def average_rouge(pairs: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 and BLEU over (reference, hypothesis) pairs, plus their ``count``."""
    sums = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu": 0.0}
    count = 0
    for reference, hypothesis in pairs:
        for key, value in rouge_char(reference, hypothesis).items():
            sums[key] += value
        sums["bleu"] += bleu_char(reference, hypothesis)
        count += 1
    if not count:
        raise ZhtextError("average_rouge: no (reference, hypothesis) pairs to average")
    return {**{key: value / count for key, value in sums.items()}, "count": count}


# --------------------------------------------------------------------------- rank correlation


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks (as ``scipy.stats.spearmanr``).

    NaN when either input is constant or contains NaN.
    """
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if len(a) != len(b):
        raise ZhtextError(f"spearman: inputs differ in length ({len(a)} and {len(b)})")
    if len(a) < 2:
        raise ZhtextError("spearman: need at least two pairs")
    if np.isnan(a).any() or np.isnan(b).any():
        return math.nan
    ra = _average_ranks(a)
    rb = _average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom == 0.0:
        return math.nan
    return float(np.clip((ra @ rb) / denom, -1.0, 1.0))
