"""benchmarks/segment_vs_jieba.py: its pieces on a few lines (not its speed), so that the benchmark
keeps running as the API it measures changes. rjieba and jieba_fast are optional: without them their
figures are null and only zhtext and jieba are compared."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from zhtext.io.reading import iter_lines
from zhtext.lexical.segment import Segmenter

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "segment_vs_jieba.py"
LINES = [
    "我来到北京清华大学，学习自然语言处理。",
    "黛玉笑道：“你这会子又说这话了。”",
    "",
    "zhtext 用 Numba 实现 jieba 的 HMM 分词，C++ 和 iPhone15 也照样切，圆周率3.14%。",
    "今天天气不错，我们去颐和园划船吧",
    "宝玉听了，忙起身笑道：“好妹妹，你别恼。”",
    "那猴王在花果山水帘洞里，自称齐天大圣。",
    "曹操引兵八十三万，号称百万，屯于赤壁。",
    "鲁智深拽开脚步，大踏步投五台山来。",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "他说的确实在理",
    "结婚的和尚未结婚的",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("segment_vs_jieba", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its worker processes find their function by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def parts(bench):
    return Segmenter(), bench.Anchors()


def test_explain_names_the_first_differing_token(bench):
    line = "我来到北京清华大学"
    said = bench.explain(line, ["我", "来到", "北京清华大学"], ["我", "来到", "北京", "清华大学"])
    assert "token 2 (char 3)" in said
    assert "['北京清华大学']" in said and "['北京', '清华大学']" in said
    # (word, tag) pairs: the offset counts the words' characters
    tagged = bench.explain("我爱你", [("我", "r"), ("爱", "v")], [("我", "r"), ("爱", "vn")])
    assert "token 1 (char 1)" in tagged
    # one list a prefix of the other: they part where the shorter ends
    assert "token 1 (char 1)" in bench.explain("我爱", ["我"], ["我", "爱"])


def test_write_corpus_repeats_whole_lines(bench, tmp_path):
    novels = ["第一回\n甄士隐梦幻识通灵\n".encode(), "第二回\n贾夫人仙逝扬州城\n".encode()]
    out = tmp_path / "big.txt"
    written = bench.write_corpus(out, novels, 100)
    data = out.read_bytes()
    assert written == len(data) <= 100 and data.endswith(b"\n")
    assert data.decode("utf-8").startswith("第一回\n甄士隐梦幻识通灵\n第二回\n")
    assert len(data) > 100 - max(len(n) for n in novels)  # cut at the last line that fits


@pytest.mark.parametrize("mode", ["hmm_off", "hmm", "search", "all", "pos", "tokenize"])
def test_every_mode_agrees_with_jieba_on_literal_lines(bench, parts, mode):
    seg, anchors = parts
    result = bench.measure_mode(seg, anchors, mode, [LINES], repeats=2)
    figures = bench.mode_figures(result)
    # pos is timed on every 10th line: the rest go through jieba in worker processes
    assert result["seen"]["zhtext_list"] == result["seen"]["zhtext_batch"] == len(LINES)
    assert figures["identical"] == figures["identical_batch"] == 1.0, figures["differences"]
    if mode in ("hmm_off", "hmm", "search", "all"):
        assert figures["identical_joined"] == 1.0
    else:
        assert figures["zhtext_joined_mb_s"] is None and figures["identical_joined"] is None
    assert figures["zhtext_list_mb_s"] > 0 and figures["jieba_mb_s"] > 0
    if anchors.rjieba is None:
        assert figures["rjieba_mb_s"] is None and figures["list_vs_rjieba"] is None


def test_a_difference_is_counted_and_shown(bench, parts):
    seg, anchors = parts
    fns = bench.contenders(seg, anchors, "hmm")
    # jieba without its HMM stands in for a zhtext that differs on the names
    fns["zhtext_list"] = lambda ls, bs: [anchors.jieba.lcut(s, HMM=False) for s in ls]
    result = bench.measure_mode(seg, anchors, "hmm", [LINES], 1, fns=fns)
    differing = sum(anchors.jieba.lcut(s, HMM=False) != anchors.jieba.lcut(s) for s in LINES)
    assert differing > 0
    assert result["same"]["zhtext_list"] == len(LINES) - differing
    assert len(result["shown"]) == min(differing, bench.SHOWN)
    assert "黛玉笑道" in "".join(result["shown"])


def test_keywords_agree_with_jieba_analyse(bench):
    docs = ["\n".join(LINES), "\n".join(LINES[4:] * 3)]
    kw = bench.measure_keywords(docs, every=1, repeats=1)
    assert kw["docs"] == 2 and kw["identical_top20"] == 1.0, kw["differences"]
    assert kw["textrank"]["identical_top20"] == 1.0, kw["textrank"]["differences"]
    assert kw["zhtext_docs_s"] > 0 and kw["jieba_docs_s"] > 0


@pytest.mark.parametrize("mode", ["hmm", "search"])
def test_novel_lines_agree_with_jieba(bench, parts, shared_data, mode):
    seg, anchors = parts
    novels = [list(iter_lines(p))[:150] for p in sorted((shared_data / "raw").glob("*.txt"))]
    figures = bench.mode_figures(bench.measure_mode(seg, anchors, mode, novels, repeats=1))
    assert figures["identical"] == figures["identical_joined"] == 1.0, figures["differences"]


def test_skips_cleanly_without_the_novels(tmp_path):
    cmd = [sys.executable, str(BENCH), "--quick", "--data", str(tmp_path / "absent")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0 and res.stdout == ""
    assert res.stderr.splitlines() == [f"skipped: no novels (*.txt) in {tmp_path / 'absent'}"]
