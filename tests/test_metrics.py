"""Tests for zhtext.eval.metrics and ``zhtext evaluate segment``: hand counts, brute force, real data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from zhtext.errors import ZhtextError
from zhtext.eval.metrics import (
    PRF,
    _lcs_length,
    average_rouge,
    bleu_char,
    entity_scores,
    rouge_char,
    score_segmentation,
    spearman,
)

SEG_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seg"

# --------------------------------------------------------------------------- segmentation by hand

# Line 1: 和尚 / 未 against 和 / 尚未; line 2: 我爱 against 我 / 爱; line 3: the characters differ.
# Separators vary on purpose: two spaces, one space, a tab, an ideographic space.
GOLD = ["结婚  的  和  尚未  结婚  的", "我  爱  北京", "今天  下雨"]
PRED = ["结婚 的\t和尚 未　结婚 的", "我爱  北京", "今天  下雪"]
TRAIN = ["结婚", "的", "和", " 我 ", "今天", ""]


def test_segmentation_hand_counted():
    score = score_segmentation(GOLD, PRED, TRAIN)
    # gold 6 + 3 + 2 words, predicted 6 + 2 + 2; correct 结婚 的 结婚 的 + 北京; line 3 none.
    assert (score.gold_words, score.pred_words, score.correct) == (11, 10, 5)
    assert score.lines == 3
    assert score.mismatched_lines == [3]
    assert score.p == pytest.approx(5 / 10)
    assert score.r == pytest.approx(5 / 11)
    assert score.f == pytest.approx(2 * (5 / 10) * (5 / 11) / (5 / 10 + 5 / 11))
    # OOV gold words: 尚未 爱 北京 下雨 (4 of 11), of which only 北京 is found.
    assert score.oov_rate == pytest.approx(4 / 11)
    assert score.oov_recall == pytest.approx(1 / 4)
    # IV gold words: 结婚 的 和 结婚 的 我 今天 (7); found: 结婚 的 结婚 的.
    assert score.iv_recall == pytest.approx(4 / 7)


def test_segmentation_format_is_the_bakeoff_summary():
    score = score_segmentation(GOLD, PRED, TRAIN)
    lines = score.format().splitlines()
    assert lines == [
        "=== TOTAL TRUE WORD COUNT:\t11",
        "=== TOTAL TEST WORD COUNT:\t10",
        f"=== TOTAL TRUE WORDS RECALL:\t{5 / 11:.3f}",
        f"=== TOTAL TEST WORDS PRECISION:\t{5 / 10:.3f}",
        f"=== F MEASURE:\t{score.f:.3f}",
        f"=== OOV Rate:\t{4 / 11:.3f}",
        f"=== OOV Recall Rate:\t{1 / 4:.3f}",
        f"=== IV Recall Rate:\t{4 / 7:.3f}",
    ]


def test_segmentation_without_word_list_has_no_oov_figures():
    score = score_segmentation(GOLD, PRED)
    assert (score.oov_rate, score.oov_recall, score.iv_recall) == (None, None, None)
    assert score.format().endswith("=== OOV Rate:\t--\n=== OOV Recall Rate:\t--\n=== IV Recall Rate:\t--")
    # With a list that covers every gold word there is nothing OOV to recall: NaN, printed "--".
    full = score_segmentation(["北京  大学"], ["北京大学"], ["北京", "大学"])
    assert full.oov_rate == 0.0 and math.isnan(full.oov_recall) and full.iv_recall == 0.0
    assert "=== OOV Recall Rate:\t--" in full.format()
    assert json.dumps(full.as_dict())  # NaN becomes null, so the dict is valid JSON
    assert full.as_dict()["oov_recall"] is None


def test_segmentation_line_count_mismatch_names_both_counts():
    with pytest.raises(ZhtextError, match=r"gold has 2 lines but the segmentation has 3"):
        score_segmentation(["a b", "c"], ["a b", "c", "d"])
    with pytest.raises(ZhtextError, match=r"gold has 3 lines but the segmentation has 1"):
        score_segmentation(iter(["a", "b", "c"]), iter(["a"]))


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [([], [], "nothing to score: the gold is empty"), (["", " "], ["", ""], "nothing to score: the gold has no words")],
)
def test_segmentation_with_nothing_to_score_is_an_error_not_zeros(gold, pred, message):
    with pytest.raises(ZhtextError, match=message):
        score_segmentation(gold, pred)


def test_segmentation_empty_lines():
    # Empty on both sides: nothing to count. Text where the gold has none: a mismatch.
    score = score_segmentation(["", "甲  乙"], ["  ", "甲乙"])
    assert (score.gold_words, score.pred_words, score.correct, score.mismatched_lines) == (2, 1, 0, [])
    score = score_segmentation(["", "甲"], ["丙", "甲"])
    assert score.mismatched_lines == [1] and (score.pred_words, score.correct) == (2, 1)


def _boundaries(words: list[str]) -> set[int]:
    out, pos = {0}, 0
    for word in words:
        pos += len(word)
        out.add(pos)
    return out


def _split(text: str, cuts: list[bool]) -> list[str]:
    words, start = [], 0
    for i, cut in enumerate(cuts, 1):
        if cut:
            words.append(text[start:i])
            start = i
    words.append(text[start:])
    return words


@st.composite
def _two_segmentations(draw):
    text = draw(st.text(alphabet="一二三四", min_size=1, max_size=14))
    gold = _split(text, draw(st.lists(st.booleans(), min_size=len(text) - 1, max_size=len(text) - 1)))
    pred = _split(text, draw(st.lists(st.booleans(), min_size=len(text) - 1, max_size=len(text) - 1)))
    return gold, pred


@settings(max_examples=200, deadline=None)
@given(_two_segmentations())
def test_segmentation_matches_boundary_definition(pair):
    # Independent definition: a gold word is found when both its ends are predicted boundaries
    # and no predicted boundary falls inside it.
    gold, pred = pair
    cuts = _boundaries(pred)
    expected, start = 0, 0
    for word in gold:
        end = start + len(word)
        expected += start in cuts and end in cuts and not any(start < c < end for c in cuts)
        start = end
    score = score_segmentation(["  ".join(gold)], [" ".join(pred)])
    assert score.correct == expected
    assert (score.gold_words, score.pred_words) == (len(gold), len(pred))
    # Swapping the two sides swaps precision and recall.
    swapped = score_segmentation([" ".join(pred)], [" ".join(gold)])
    assert (swapped.p, swapped.r, swapped.f) == pytest.approx((score.r, score.p, score.f))


def test_pku_gold_against_itself_is_perfect():
    if not SEG_DATA.is_dir():
        pytest.skip(f"SIGHAN data not found at {SEG_DATA}")
    from zhtext.io.reading import iter_lines

    gold = SEG_DATA / "pku_test_gold.utf8"
    score = score_segmentation(iter_lines(gold), iter_lines(gold), iter_lines(SEG_DATA / "pku_training_words.utf8"))
    assert score.p == score.r == score.f == 1.0
    assert score.oov_recall == score.iv_recall == 1.0
    assert score.lines == 1945 and score.mismatched_lines == []
    # 104,372 gold words and OOV rate 0.058: the figures the official scorer prints (MANIFEST.md).
    assert score.gold_words == 104372
    assert f"{score.oov_rate:.3f}" == "0.058"


# --------------------------------------------------------------------------- entity spans


def test_entity_scores_by_hand():
    gold = [[(0, 2, "PER"), (5, 7, "LOC")], [(1, 3, "ORG")]]
    pred = [[(0, 2, "PER"), (5, 7, "ORG")], [(1, 3, "ORG"), (4, 6, "PER"), (4, 6, "PER")]]
    scores = entity_scores(gold, pred)
    assert list(scores) == ["LOC", "ORG", "PER", "overall"]
    assert scores["PER"] == PRF(p=0.5, r=1.0, f=pytest.approx(2 / 3), support=1)  # duplicate counts once
    assert scores["LOC"] == PRF(p=0.0, r=0.0, f=0.0, support=1)
    assert scores["ORG"] == PRF(p=0.5, r=1.0, f=pytest.approx(2 / 3), support=1)
    overall = scores["overall"]
    assert (overall.p, overall.r, overall.support) == (0.5, pytest.approx(2 / 3), 3)
    assert overall.f == pytest.approx(4 / 7)


def test_entity_scores_match_within_a_sentence_only():
    scores = entity_scores([[(0, 1, "A")], []], [[], [(0, 1, "A")]])
    assert scores["A"] == PRF(p=0.0, r=0.0, f=0.0, support=1)
    with pytest.raises(ZhtextError, match="2 gold sentences but 1 predicted"):
        entity_scores([[], []], [[]])


# --------------------------------------------------------------------------- ROUGE and BLEU


def test_rouge_char_by_hand():
    # 我爱北京天安门 vs 我爱天安门: unigrams 5 of 5 / 7; bigrams 我爱 天安 安门 = 3 of 4 / 6; LCS 5.
    scores = rouge_char("我爱北京天安门", "我 爱 天安门")
    assert scores["rouge-1"] == pytest.approx(5 / 6)
    assert scores["rouge-2"] == pytest.approx(3 / 5)
    assert scores["rouge-l"] == pytest.approx(5 / 6)
    # Clipping: the third 天 of the hypothesis has no partner.
    assert rouge_char("天天", "天天天")["rouge-1"] == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    # LCS is order-aware where unigrams are not.
    swapped = rouge_char("甲乙丙", "丙乙甲")
    assert swapped["rouge-1"] == 1.0 and swapped["rouge-l"] == pytest.approx(1 / 3)
    assert rouge_char("", "甲") == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_bleu_char_by_hand():
    # p1 = 5/5, p2 = 3/4, p3 = 1/3 (天安门), p4 = 0 -> 0.1/2 smoothed; brevity exp(1 - 7/5).
    expected = math.exp(1 - 7 / 5) * (1 * 0.75 * (1 / 3) * (0.1 / 2)) ** 0.25
    assert bleu_char("我爱北京天安门", "我爱天安门") == pytest.approx(expected)
    assert bleu_char("我爱北京天安门", "我爱天安门", max_n=2) == pytest.approx(math.exp(-0.4) * 0.75**0.5)
    assert bleu_char("今天天气很好", "今天 天气 很好") == pytest.approx(1.0)
    assert bleu_char("今天", "明日") == 0.0
    assert bleu_char("今天", "") == 0.0
    # Longer than the reference: no brevity penalty, clipped unigrams 2 of 3.
    assert bleu_char("天天", "天天天", max_n=1) == pytest.approx(2 / 3)


def test_average_rouge():
    pairs = [("我爱北京天安门", "我爱天安门"), ("甲乙丙", "丙乙甲")]
    avg = average_rouge(iter(pairs))
    assert avg["count"] == 2
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert avg[key] == pytest.approx(sum(rouge_char(r, h)[key] for r, h in pairs) / 2)
    assert avg["bleu"] == pytest.approx(sum(bleu_char(r, h) for r, h in pairs) / 2)
    with pytest.raises(ZhtextError):
        average_rouge([])


def _lcs_table(a: str, b: str) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="甲乙丙丁", max_size=40), st.text(alphabet="甲乙丙丁", max_size=40))
def test_bit_parallel_lcs_matches_dynamic_programming(a, b):
    assert _lcs_length(a, b) == _lcs_table(a, b)


# --------------------------------------------------------------------------- Spearman


def _brute_ranks(values: list[float]) -> list[float]:
    return [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]


def _brute_spearman(x: list[float], y: list[float]) -> float:
    rx, ry = _brute_ranks(x), _brute_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


_scores = st.lists(st.integers(0, 4).map(float) | st.floats(-3, 3, allow_nan=False), min_size=2, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_spearman_matches_brute_force_with_ties(data):
    x = data.draw(_scores)
    y = data.draw(st.lists(st.integers(0, 3).map(float), min_size=len(x), max_size=len(x)))
    if len(set(x)) < 2 or len(set(y)) < 2:
        assert math.isnan(spearman(x, y))
    else:
        assert spearman(x, y) == pytest.approx(_brute_spearman(x, y), abs=1e-12)


def test_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=500).astype(float)
    y = x + rng.normal(size=500)
    assert abs(spearman(x, y) - stats.spearmanr(x, y).statistic) < 1e-12


def test_spearman_edges():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, float("nan")], [1, 2]))
    with pytest.raises(ZhtextError, match="differ in length"):
        spearman([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- CLI




@pytest.fixture
def seg_files(tmp_path):
    gold, pred, words = tmp_path / "gold.txt", tmp_path / "pred.txt", tmp_path / "words.txt"
    gold.write_text("\r\n".join(GOLD) + "\r\n", encoding="utf-8")
    pred.write_text("\n".join(PRED) + "\n", encoding="utf-8")
    words.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    return gold, pred, words


def test_cli_prints_the_figures(monkeypatch, capsys, seg_files):
    gold, pred, words = seg_files
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "segment", "--gold", str(gold), "--pred", str(pred),
                             "--words", str(words))
    assert code == 0
    assert out.strip() == score_segmentation(GOLD, PRED, TRAIN).format()
    assert "warning" in err and "count as wrong: 3" in " ".join(err.split())


def test_cli_json(monkeypatch, capsys, seg_files):
    gold, pred, _ = seg_files
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "segment", "--gold", str(gold), "--pred", str(pred),
                           "--json")
    assert code == 0
    figures = json.loads(out)
    assert (figures["correct"], figures["gold_words"], figures["pred_words"]) == (5, 11, 10)
    assert figures["mismatched_lines"] == [3] and figures["oov_rate"] is None


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("short", "gold has 3 lines but the segmentation has 2"),
        ("neither", "exactly one of --pred"),
    ],
)
def test_cli_errors_are_one_line(monkeypatch, capsys, seg_files, case, message):
    gold, pred, _ = seg_files
    args = ["evaluate", "segment", "--gold", str(gold)]
    if case == "missing":
        args += ["--pred", str(pred.with_name("absent.txt"))]
    elif case == "short":
        pred.write_text("\n".join(PRED[:2]) + "\n", encoding="utf-8")
        args += ["--pred", str(pred)]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("zhtext: error: ") and message in err


def test_cli_dict_segments_the_gold_text(monkeypatch, capsys, tmp_path):
    pytest.importorskip("zhtext.lexical.segment")
    gold = tmp_path / "gold.txt"
    gold.write_text("北京  大学生  来  了\n", encoding="utf-8")
    lexicon = tmp_path / "dict.txt"  # jieba format: only these words, so the best route is the gold
    lexicon.write_text("北京 50 ns\n大学生 40 n\n来 30 v\n了 30 ul\n大学 5 n\n", encoding="utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "segment", "--gold", str(gold), "--dict", str(lexicon),
                           "--json")
    assert code == 0
    assert json.loads(out)["f"] == 1.0


@pytest.mark.parametrize("hmm", [True, False])
def test_cli_dict_jieba_on_pku_equals_scoring_jieba_output(monkeypatch, capsys, hmm):
    if not SEG_DATA.is_dir():
        pytest.skip(f"SIGHAN data not found at {SEG_DATA}")
    pytest.importorskip("zhtext.lexical.segment")
    import jieba

    from zhtext.io.reading import iter_lines

    gold_path = SEG_DATA / "pku_test_gold.utf8"
    gold = list(iter_lines(gold_path))
    jieba_lines = [" ".join(jieba.cut("".join(line.split()), HMM=hmm)) for line in gold]
    expected = score_segmentation(gold, jieba_lines).as_dict()
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "segment", "--gold", str(gold_path), "--dict", "jieba",
                           "--json", *([] if hmm else ["--no-hmm"]))
    assert code == 0
    assert json.loads(out) == expected
