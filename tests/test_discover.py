"""Word discovery: exact counts, cohesion, candidates, re-estimation invariants, planted words, CLI."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zhtext.corpus import IdCorpus, encode_ids, fragments
from zhtext.discover import Discoverer, discover
from zhtext.ngrams import CountTable, KeySet, ids_to_text, unpack
from zhtext.progress import Bar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data"))
from generate_corpus import PLANTED, generate  # noqa: E402

HAN = re.compile(r"[\u4e00-\u9fd5]+")


def random_text(rng: random.Random, n_lines: int = 60) -> list[str]:
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发"
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append("".join(rng.choice(alphabet[: rng.randint(3, 12)]) for _ in range(rng.randint(1, 30))))
        parts.append(rng.choice(["", "abc", "，", "😀", " 12 "]))
        lines.append(rng.choice(["，", "。", "x", " "]).join(parts))
    return lines


def test_encode_and_fragments_match_regex():
    rng = random.Random(1)
    text = "\n".join(random_text(rng, 20))
    codes, offsets = fragments(encode_ids(text))
    frags = [chr(0) + "".join(map(chr, codes[a:b])) for a, b in zip(offsets[:-1], offsets[1:])]
    assert [f[1:] for f in frags] == HAN.findall(text)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ngram_counts_exact(seed):
    rng = random.Random(seed)
    lines = random_text(rng)
    corpus = IdCorpus.from_lines(lines, block_chars=rng.randint(50, 400))
    frags = HAN.findall("\n".join(lines))
    uni = sum(np.bincount(b, minlength=1 << 16) for b in corpus)
    uni[0] = 0
    min_count = rng.randint(1, 3)
    prev = None
    for n in (2, 3, 4):
        table = CountTable(bits=4)  # tiny: forces growth and resumption mid-block
        for block in corpus:
            table.count(block, n, uni >= min_count, prev)
        keys, counts = table.items(min_count)
        got = {ids_to_text(unpack(k, n)): int(c) for k, c in zip(keys, counts)}
        brute = Counter(f[i : i + n] for f in frags for i in range(len(f) - n + 1))
        assert got == {w: c for w, c in brute.items() if c >= min_count}
        prev = KeySet(keys, counts)


def test_cohesion_filter_matches_definition():
    rng = random.Random(5)
    lines = random_text(rng, 80)
    frags = HAN.findall("\n".join(lines))
    counts = Counter(f[i : i + n] for f in frags for n in range(1, 5) for i in range(len(f) - n + 1))
    total = sum(len(f) for f in frags)
    finder = Discoverer(min_count=2, thresholds={2: 0.5, 3: 1.0, 4: 1.5})
    with Bar(False) as bar:
        _, kept = finder._count(IdCorpus.from_lines(lines), 2, bar)
    for n in (2, 3, 4):
        expected = set()
        for w, c in counts.items():
            if len(w) == n and c >= 2:
                pmi = min(math.log(c * total / (counts[w[:i]] * counts[w[i:]])) for i in range(1, n))
                if pmi >= finder.thresholds[n] - 1e-12:
                    expected.add(w)
        got = {ids_to_text(unpack(k, n)) for k in kept[n].keys if k}
        assert got == expected


def test_candidates_are_maximal_glued_spans():
    rng = random.Random(9)
    lines = random_text(rng, 80)
    finder = Discoverer(min_count=2, max_n=3, thresholds={2: 0.3, 3: 0.8}, max_word_len=6)
    corpus = IdCorpus.from_lines(lines, block_chars=300)
    with Bar(False) as bar:
        _, kept = finder._count(corpus, 2, bar)
        got = finder._candidates(corpus, kept, 2, bar)
    kept_words = {n: {ids_to_text(unpack(k, n)) for k in kept[n].keys if k} for n in (2, 3)}
    expected: Counter[str] = Counter()
    for frag in HAN.findall("\n".join(lines)):
        glue = [False] * len(frag)
        for p in range(len(frag)):
            for n in (2, 3):
                if frag[p : p + n] in kept_words[n] and p + n <= len(frag):
                    for q in range(p, p + n - 1):
                        glue[q] = True
        p = 0
        while p < len(frag):
            if not glue[p]:
                p += 1
                continue
            e = p
            while glue[e]:
                e += 1
            span = frag[p : e + 1]
            windows_ok = all(span[i : i + 3] in kept_words[3] for i in range(len(span) - 2))
            if len(span) <= 6 and (len(span) <= 3 or windows_ok):
                expected[span] += 1
            p = e + 1
    assert got == {w: c for w, c in expected.items() if c >= 2}


def test_reestimation_covers_every_character_and_bits_fall():
    lines = generate(1500, seed=3)
    finder = Discoverer(progress=False)
    lexicon = finder.run(lines)
    han = sum(len(f) for f in HAN.findall("\n".join(lines)))
    # The lexicon's counts are one segmentation of the corpus: every character exactly once.
    assert sum(len(w) * c for w, c in lexicon.items()) == han
    described = finder.stats.description_bits
    assert all(b < a for a, b in zip(described, described[1:]))
    assert lexicon.bits_per_char == finder.stats.bits_per_char
    # bits per char is the corpus's code length under the previous pass's unigram model: it can
    # never be below the entropy of the final counts' own distribution.
    total = sum(lexicon.values())
    entropy = -sum(c * math.log2(c / total) for c in lexicon.values()) / han
    assert lexicon.bits_per_char[-1] >= entropy - 1e-9


def test_planted_words_recovered():
    lexicon = discover(generate(6000, seed=11))
    words = {w for w in lexicon if len(w) > 1}
    found = set(PLANTED) & words
    assert len(found) / len(PLANTED) >= 0.95, sorted(set(PLANTED) - words)
    # the most frequent discovered words are mostly real words, not template glue
    top = [w for w, _ in lexicon.most_common() if len(w) > 1][:100]
    assert sum(w in PLANTED for w in top) >= 60


def _zhtext(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "zhtext", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_cli_discover_writes_lexicon_and_jieba_format(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(generate(800, seed=2)), encoding="utf-8")
    out = tmp_path / "lex.tsv"
    res = _zhtext("discover", corpus, "-o", out, "--min-len", "2", "--top", "50")
    assert res.returncode == 0, res.stderr
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 50 and all(len(w) >= 2 and int(c) > 0 for w, c in rows)
    assert [int(c) for _, c in rows] == sorted((int(c) for _, c in rows), reverse=True)
    assert "bits per char" in res.stderr
    # GB18030 input gives the same lexicon; jieba format loads into jieba
    gb = tmp_path / "gb.txt"
    gb.write_bytes(corpus.read_text(encoding="utf-8").encode("gb18030"))
    jb = tmp_path / "lex.dict"
    res = _zhtext("discover", gb, "-o", jb, "--format", "jieba", "-q", "--min-len", "2", "--top", "50")
    assert res.returncode == 0, res.stderr
    assert [line.split(" ") for line in jb.read_text(encoding="utf-8").splitlines()] == rows
    import jieba

    tok = jieba.Tokenizer(dictionary=str(jb))
    assert tok.lcut(rows[0][0], HMM=False) == [rows[0][0]]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"only ascii text\n", "no Chinese"),
        (bytes(range(256)) * 8, "binary"),
        ("中文".encode("utf-8") + b"\xff\xfe\xfa", "offset 6"),
    ],
    ids=["empty", "no-han", "binary", "undecodable"],
)
def test_cli_bad_input(tmp_path, content, message):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    out = tmp_path / "lex.tsv"
    res = _zhtext("discover", path, "-o", out, "--encoding", "utf-8") if message.startswith("offset") \
        else _zhtext("discover", path, "-o", out)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zhtext: error:") and message in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_cli_missing_file_and_bad_option(tmp_path):
    res = _zhtext("discover", tmp_path / "nope.txt")
    assert res.returncode == 1 and "no such file" in res.stderr and "Traceback" not in res.stderr
    res = _zhtext("discover", tmp_path / "nope.txt", "--max-n", "9")
    assert res.returncode != 0 and "Traceback" not in res.stderr
