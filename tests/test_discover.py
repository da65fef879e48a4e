"""Word discovery: exact counts, cohesion, candidates, re-estimation invariants, planted words, CLI."""

from __future__ import annotations

import math
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from zhtext.lexical.corpus import IdCorpus, text_blocks
from zhtext.distributed.discover import discover
from zhtext.lexical.discover import Discoverer, _kept_words
from zhtext.lexical.ngrams import CountTable, KeySet, unpack
from zhtext.io.progress import Bar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data"))
from generate_corpus import PLANTED, generate  # noqa: E402

HAN = re.compile(r"[\u4e00-\u9fd5]+")
# A fragment is a run of units; a unit is a Han character or a whole ASCII letter/digit run.
FRAGMENT = re.compile(r"(?:[\u4e00-\u9fd5]|[A-Za-z0-9])+")
UNIT = re.compile(r"[\u4e00-\u9fd5]|[A-Za-z0-9]+")


def random_text(rng: random.Random, n_lines: int = 60) -> list[str]:
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发"
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append("".join(rng.choice(alphabet[: rng.randint(3, 12)]) for _ in range(rng.randint(1, 30))))
        parts.append(rng.choice(["", "abc", "，", "😀", " 12 ", "2000年", "x"]))
        lines.append(rng.choice(["，", "。", "x", " ", "12", ""]).join(parts))
    return lines


def unit_fragments(lines: list[str]) -> list[tuple[str, ...]]:
    """The fragments of some lines as tuples of units, by regular expressions (the brute force)."""
    return [tuple(UNIT.findall(f)) for line in lines for f in FRAGMENT.findall(line)]


def spelled(corpus: IdCorpus, key: int, n: int) -> tuple[str, ...]:
    return tuple(corpus.spell([i]) for i in unpack(key, n))


def corpus_fragments(corpus: IdCorpus, blocks=None) -> list[tuple[str, ...]]:
    """The fragments of an id corpus (or of some of its blocks) as tuples of spelled units."""
    got = []
    for block in corpus if blocks is None else blocks:
        assert block[0] == 0 and block[-1] == 0
        bounds = np.flatnonzero(block == 0)
        got += [tuple(corpus.spell([i]) for i in block[a + 1 : b]) for a, b in zip(bounds, bounds[1:]) if b > a + 1]
    return got


def test_encode_matches_regex_units():
    rng = random.Random(1)
    lines = random_text(rng, 40)
    corpus = IdCorpus.from_lines(lines, block_chars=200)
    got = corpus_fragments(corpus)
    assert got == unit_fragments(lines)
    assert corpus.units == sum(map(len, got))
    assert corpus.han_chars == sum(len(f) for f in HAN.findall("\n".join(lines)))
    units = Counter(u for f in got for u in f)
    assert {corpus.spell([i]): int(c) for i, c in enumerate(corpus.unigrams) if c} == units


def test_blocks_hold_only_the_bytes_counted():
    # mostly separators: the encoded block is far shorter than its codepoint buffer
    lines = ["中，。！？…… —— 《》 “”（）" * 20] * 200
    corpus = IdCorpus.from_lines(lines, block_chars=5000)
    held = sum(b.nbytes if b.base is None else b.base.nbytes for b in corpus.blocks)
    assert len(corpus) > 1 and held == corpus.blocks.held_bytes == sum(b.nbytes for b in corpus.blocks)


def test_text_blocks_cut_at_line_ends(tmp_path):
    rng = random.Random(4)
    text = "\n".join(random_text(rng, 300)) + "\n"
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8")
    blocks = list(text_blocks(path, block_chars=500))
    assert len(blocks) > 3 and "".join(blocks) == text
    assert all(b.endswith("\n") for b in blocks)
    # a file is read as the same corpus as its lines
    a, b = IdCorpus.read(path, block_chars=500), IdCorpus.from_lines(text.splitlines())
    assert len(a) > 3 and corpus_fragments(a) == corpus_fragments(b) == unit_fragments(text.splitlines())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ngram_counts_exact(seed):
    rng = random.Random(seed)
    lines = random_text(rng)
    corpus = IdCorpus.from_lines(lines, block_chars=rng.randint(50, 400))
    frags = unit_fragments(lines)
    uni = corpus.unigrams
    min_count = rng.randint(1, 3)
    prev = None
    for n in (2, 3, 4):
        table = CountTable(bits=4)  # tiny: forces growth and resumption mid-block
        for block in corpus:
            table.count(block, n, uni >= min_count, prev)
        keys, counts = table.items(min_count)
        got = {spelled(corpus, k, n): int(c) for k, c in zip(keys, counts)}
        brute = Counter(f[i : i + n] for f in frags for i in range(len(f) - n + 1))
        assert got == {w: c for w, c in brute.items() if c >= min_count}
        # counting blocks in two tables and merging them gives the same counts
        halves = [CountTable(bits=4), CountTable(bits=4)]
        for k, block in enumerate(corpus):
            halves[k % 2].count(block, n, uni >= min_count, prev)
        halves[0].merge(halves[1])
        merged_keys, merged_counts = halves[0].items(min_count)
        assert np.array_equal(merged_keys, keys) and np.array_equal(merged_counts, counts)
        # with an end-unit filter: only windows whose first and last units pass it (a random
        # half of the ids, so that some windows pass and some do not)
        ends = (uni >= min_count) & (np.random.default_rng(seed * 10 + n).random(len(uni)) < 0.5)
        table = CountTable(bits=4)
        for block in corpus:
            table.count(block, n, uni >= min_count, prev, ends)
        keys_end, counts_end = table.items(min_count)
        rare = {corpus.spell([i]) for i in np.flatnonzero(ends)}
        got = {spelled(corpus, k, n): int(c) for k, c in zip(keys_end, counts_end)}
        frequent = {w: c for w, c in brute.items() if c >= min_count}
        expected = {w: c for w, c in frequent.items() if w[0] in rare and w[-1] in rare}
        assert 0 < len(expected) < len(frequent)  # the filter keeps some windows, drops others
        assert got == expected
        prev = KeySet(keys, counts)


@pytest.mark.parametrize(
    "thresholds",
    [{2: 0.5, 3: 1.0, 4: 1.5}, {2: 1.0, 3: 3.5, 4: 6.0}, {2: 1.0, 3: 5.5, 4: 12.0}, {2: 0.0, 3: 0.0, 4: 0.0}],
)  # the larger rises leave the last orders (partly or wholly) to the end-unit bound
def test_cohesion_filter_matches_definition(thresholds):
    rng = random.Random(5)
    lines = random_text(rng, 80)
    frags = unit_fragments(lines)
    counts = Counter(f[i : i + n] for f in frags for n in range(1, 5) for i in range(len(f) - n + 1))
    total = sum(len(f) for f in frags)
    finder = Discoverer(min_count=2, thresholds=thresholds)
    corpus = IdCorpus.from_lines(lines)
    with Bar(False) as bar:
        kept = finder._count(corpus, 2, bar)
    for n in (2, 3, 4):
        expected = set()
        for w, c in counts.items():
            if len(w) == n and c >= 2:
                pmi = min(math.log(c * total / (counts[w[:i]] * counts[w[i:]])) for i in range(1, n))
                if pmi >= finder.thresholds[n] - 1e-12:
                    expected.add(w)
        got = {spelled(corpus, k, n) for k in kept[n].keys if k}
        assert got == expected


def test_candidates_are_maximal_glued_spans():
    rng = random.Random(9)
    lines = random_text(rng, 80)
    finder = Discoverer(min_count=2, max_n=3, thresholds={2: 0.3, 3: 0.8}, max_word_len=6)
    corpus = IdCorpus.from_lines(lines, block_chars=300)
    with Bar(False) as bar:
        kept = finder._count(corpus, 2, bar)
        got = finder._candidates(corpus, kept, 2, bar)
    kept_words = {n: {spelled(corpus, k, n) for k in kept[n].keys if k} for n in (2, 3)}
    expected: Counter[tuple[str, ...]] = Counter()
    for frag in unit_fragments(lines):
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
    got_units = {tuple(corpus.spell([ord(u)]) for u in w): c for w, c in got.items()}
    assert got_units == {w: c for w, c in expected.items() if c >= 2}


def test_threads_give_the_same_counts_candidates_and_lexicon():
    rng = random.Random(13)
    lines = random_text(rng, 300) + generate(600, seed=5)
    corpus = IdCorpus.from_lines(lines, block_chars=700)  # many blocks to share out
    results = []
    for threads in (1, 2, 3):
        finder = Discoverer(min_count=2, threads=threads)
        with Bar(False) as bar:
            kept = finder._count(corpus, 2, bar)
            candidates = finder._candidates(corpus, kept, 2, bar)
        results.append(([set(k.keys.tolist()) if k else None for k in kept], candidates,
                        dict(finder.stats.ngrams_counted)))
    assert results[0] == results[1] == results[2]
    # the whole pipeline, one block or many (discover reads these lines into one block)
    one, two = discover(lines, threads=1), discover(lines, threads=2)
    assert one.counts == two.counts and one.bits_per_char == two.bits_per_char
    # a corpus spilled to its temporary file streams the same blocks to every thread
    spilled = IdCorpus(spill_bytes=2000)
    for text in text_blocks(lines, block_chars=700):
        spilled.add_text(text)
    assert spilled.blocks.spilled and corpus_fragments(spilled) == corpus_fragments(corpus)
    finder = Discoverer(min_count=2, threads=2)
    with Bar(False) as bar:
        kept = finder._count(spilled, 2, bar)
        assert finder._candidates(spilled, kept, 2, bar) == results[0][1]
    spilled.close()


def _spelling_bits(lexicon, han_text: str) -> float:
    """Bits to spell a lexicon's words (units plus an end mark each, log2(alphabet + 1) bits a
    symbol), recomputed from the lexicon itself (a corpus of Han characters only)."""
    return sum(len(w) + 1 for w in lexicon if len(w) > 1) * math.log2(len(set(han_text)) + 1)


def test_reestimation_is_the_same_on_any_number_of_threads():
    rng = random.Random(13)
    lines = random_text(rng, 300) + generate(600, seed=5)
    corpus = IdCorpus.from_lines(lines, block_chars=700)
    spilled = IdCorpus(spill_bytes=2000)
    for text in text_blocks(lines, block_chars=700):
        spilled.add_text(text)
    assert len(corpus) > 20 and spilled.blocks.spilled  # many blocks to share out
    with Bar(False) as bar:
        finder = Discoverer(min_count=2, threads=1)
        candidates = {**_kept_words(finder._count(corpus, 2, bar)),
                      **finder._candidates(corpus, finder._count(corpus, 2, bar), 2, bar)}
        results = {}
        for source, name in ((corpus, "memory"), (spilled, "spilled")):
            for sample_units in (corpus.units, corpus.units // 3):  # whole corpus, and sampled
                for threads in (1, 2, 3):
                    finder = Discoverer(min_count=2, threads=threads, sample_units=sample_units)
                    counts = finder._reestimate(source, candidates, 2, bar)
                    # the same words in the same order, and the same bits to the last digit
                    results[name, sample_units, threads] = (
                        list(counts.items()), finder.stats.bits_per_char, finder.stats.description_bits
                    )
    spilled.close()
    for (name, sample_units, threads), got in results.items():
        assert got == results["memory", sample_units, 1], (name, sample_units, threads)
        assert len(got[1]) >= 2  # more than one pass compared


def _blocks_after_an_error(threads: int) -> tuple[int, int]:
    """Blocks of a 60-block corpus that ``each_block`` starts after its first block's work fails
    (and the number of blocks); every other block waits for that failure before it counts."""
    corpus = IdCorpus.from_lines([f"第{i}行" for i in range(60)], block_chars=4)
    failed = threading.Event()
    started_after: list[int] = []

    def work(worker: int, index: int, block: np.ndarray) -> None:
        if index == 0:
            failed.set()
            raise ValueError("bad block")
        failed.wait()
        started_after.append(index)

    with pytest.raises(ValueError, match="bad block"):
        corpus.each_block(work, threads)
    return len(started_after), len(corpus)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_each_block_stops_at_the_first_error(threads):
    after, blocks = _blocks_after_an_error(threads)
    assert blocks == 60
    # no thread takes a block once the error is known: only those already taken finish
    assert after <= threads - 1


def test_one_pass_is_the_unigram_route_of_the_candidates():
    """Re-estimation's first pass, rebuilt from its definition over the text itself."""
    from zhtext.lexical.route import unigram_route
    from zhtext.lexical.chars import join_lines
    from zhtext.lexical.trie import build_trie

    lines = generate(1500, seed=3)
    finder = Discoverer(min_count=3, iterations=1)
    lexicon = finder.run(lines)
    corpus = IdCorpus.from_lines(lines)
    with Bar(False) as bar:
        kept = finder._count(corpus, 3, bar)
        candidates = {**_kept_words(kept), **finder._candidates(corpus, kept, 3, bar)}
    fragments = HAN.findall("\n".join(lines))
    han_text = "".join(fragments)
    model = {**Counter(han_text), **{corpus.spell(map(ord, w)): c for w, c in candidates.items()}}
    assert len(model) > len(set(han_text))  # candidates beyond the single characters
    words = list(model)
    total = sum(model.values())
    weights = np.log(np.array([model[w] for w in words], dtype=np.float64) / total)
    codes, offsets = join_lines(fragments)
    ends, _, logp = unigram_route(codes, offsets, build_trie(words, weights), -math.log(total))
    starts = np.concatenate([[0], ends[:-1]])
    tokens = Counter(han_text[a:b] for a, b in zip(starts.tolist(), ends.tolist()))
    assert dict(lexicon.counts) == dict(tokens)
    bits = -logp / math.log(2) / len(han_text)
    assert lexicon.bits_per_char == pytest.approx([bits], rel=1e-12)
    described = bits + _spelling_bits(lexicon, han_text) / len(han_text)
    assert finder.stats.description_bits == pytest.approx([described], rel=1e-12)


def test_reestimation_covers_every_character_and_bits_fall():
    lines = generate(1500, seed=3)
    finder = Discoverer(progress=False)
    lexicon = finder.run(lines)
    han_text = "".join(HAN.findall("\n".join(lines)))
    han = len(han_text)
    # The lexicon's counts are one segmentation of the corpus: every character exactly once.
    assert sum(len(w) * c for w, c in lexicon.items()) == han
    # The last description recorded is that of the returned lexicon: its corpus bits plus the
    # bits to spell its words, recomputed here from the lexicon alone.
    assert len(lexicon.bits_per_char) >= 2  # re-estimation ran more than one pass
    described = finder.stats.description_bits[-1]
    assert described == pytest.approx(lexicon.bits_per_char[-1] + _spelling_bits(lexicon, han_text) / han, rel=1e-12)
    # bits per char is the corpus's code length under the previous pass's unigram model: it can
    # never be below the entropy of the final counts' own distribution.
    total = sum(lexicon.values())
    entropy = -sum(c * math.log2(c / total) for c in lexicon.values()) / han
    assert lexicon.bits_per_char[-1] >= entropy - 1e-9


def test_sample_takes_whole_fragments_from_every_block():
    lines = generate(3000, seed=8)
    corpus = IdCorpus.from_lines(lines, block_chars=5000)
    pieces = list(corpus.sample(corpus.units // 4))
    units = sum(int(np.count_nonzero(p)) for p in pieces)
    assert 0.2 * corpus.units < units < 0.3 * corpus.units
    whole = Counter(corpus_fragments(corpus))
    taken = Counter(corpus_fragments(corpus, pieces))  # also checks that pieces start and end at 0
    assert not taken - whole
    assert len(pieces) >= len(corpus) * 4  # spread over every block, not its first stretch
    whole_sample = list(corpus.sample(corpus.units))
    assert len(whole_sample) == len(corpus) and all(map(np.array_equal, whole_sample, corpus))


def test_sampled_reestimation_still_counts_every_character():
    lines = generate(1500, seed=3)
    han = sum(len(f) for f in HAN.findall("\n".join(lines)))
    finder = Discoverer(sample_units=han // 5)
    lexicon = finder.run(lines)
    # the model chosen on the sample routes the whole corpus once: every character exactly once
    assert sum(len(w) * c for w, c in lexicon.items()) == han
    # the final bits per char is the whole corpus's, routed by the chosen model: never below the
    # entropy of its own counts (a sample's, wrongly scaled, could be)
    total = sum(lexicon.values())
    entropy = -sum(c * math.log2(c / total) for c in lexicon.values()) / han
    assert len(finder.stats.bits_per_char) >= 1 and finder.stats.bits_per_char[-1] >= entropy - 1e-9
    planted = {w for w in lexicon if len(w) > 1} & set(PLANTED)
    assert len(planted) >= 0.9 * len(PLANTED)


def test_route_on_ids_matches_unigram_route():
    from zhtext.lexical.route import route_counts, unigram_route
    from zhtext.lexical.trie import build_trie

    rng = random.Random(3)
    corpus = IdCorpus.from_lines(random_text(rng, 120), block_chars=400)
    units = [chr(i) for i in np.flatnonzero(corpus.unigrams)]
    grams = {"".join(chr(i) for i in b[p : p + n]) for b in corpus for p in range(len(b)) for n in (2, 3)}
    words = rng.sample(units, len(units) - 3) + rng.sample(sorted(w for w in grams if "\0" not in w), 40)
    weights = np.log(np.array([rng.randint(1, 50) for _ in words], dtype=np.float64) / 1000.0)
    trie = build_trie(words, weights)
    for block in corpus:
        counts = np.zeros(len(words), dtype=np.int64)
        unknown = np.zeros(1 << 16, dtype=np.int64)
        logp, n = route_counts(block, trie, -9.0, counts, unknown)
        # the reference: codepoint route over the block's fragments
        codes = block[block != 0].astype(np.int32)
        zeros = np.flatnonzero(block == 0)
        lengths = np.diff(zeros) - 1
        offsets = np.concatenate([[0], np.cumsum(lengths[lengths > 0])])
        ends, ids, ref_logp = unigram_route(codes, offsets, trie, -9.0)
        assert n == len(codes) and math.isclose(logp, ref_logp, rel_tol=1e-12)
        assert np.array_equal(counts, np.bincount(ids[ids >= 0], minlength=len(words)))
        assert np.array_equal(unknown, np.bincount(codes[ends[ids < 0] - 1], minlength=1 << 16))


def test_letter_digit_runs_make_words():
    rng = random.Random(2)
    lines = [f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日，{line}" for line in generate(3000, seed=4)]
    lexicon = discover(lines)
    months = {f"{m}月" for m in range(1, 13)}
    assert len(months & set(lexicon)) >= 10
    # a lone run is no entry (the segmenter keeps runs whole); Han characters are covered once
    assert not any(w.isascii() for w in lexicon)
    han = sum(len(f) for f in HAN.findall("\n".join(lines)))
    assert sum(c * len(HAN.findall(w)[0]) for w, c in lexicon.items() if HAN.search(w)) == han


def test_planted_words_recovered():
    lexicon = discover(generate(6000, seed=11))
    words = {w for w in lexicon if len(w) > 1}
    found = set(PLANTED) & words
    assert len(found) / len(PLANTED) >= 0.95, sorted(set(PLANTED) - words)
    # the shipped corpus (the README's example): every planted word
    shipped = discover(ROOT / "data" / "corpus.txt")
    assert not set(PLANTED) - set(shipped), sorted(set(PLANTED) - set(shipped))
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


def test_cli_bad_output_folder_fails_in_one_line(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(generate(50, seed=2)), encoding="utf-8")
    res = _zhtext("discover", corpus, "-o", tmp_path / "missing" / "lex.tsv")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zhtext: error:") and "missing" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


def test_cli_missing_file_and_bad_option(tmp_path):
    res = _zhtext("discover", tmp_path / "nope.txt")
    assert res.returncode == 1 and "no such file" in res.stderr and "Traceback" not in res.stderr
    res = _zhtext("discover", tmp_path / "nope.txt", "--max-n", "9")
    assert res.returncode != 0 and "Traceback" not in res.stderr
