"""Byte-range splits: every line exactly once, in order, whatever the split size; the same text
as reading the whole file; the same discovery blocks."""

from __future__ import annotations

import codecs
import random

import pytest

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_text_chunks
from zhtext.io.splits import expand_inputs, plan_splits, split_bytes, split_text
from zhtext.lexical.corpus import text_blocks


def _random_lines(rng: random.Random, n: int) -> list[str]:
    alphabet = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要abcXYZ0123 ,.。，！"
    lines = []
    for _ in range(n):
        size = rng.choice([0, 0, 1, 2, 5, 20, 60, 300])
        lines.append("".join(rng.choice(alphabet) for _ in range(size)))
    return lines


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("codec", ["utf-8", "gb18030", "utf-8-sig"])
def test_splits_hold_every_line_once_in_order(tmp_path, seed, codec):
    rng = random.Random(seed)
    lines = _random_lines(rng, rng.randint(1, 120))
    text = "\n".join(lines) + ("\n" if rng.random() < 0.5 else "")
    if rng.random() < 0.3:
        text = text.replace("\n", "\r\n")
    path = tmp_path / "in.txt"
    data = text.encode(codec)
    path.write_bytes(data)
    body = data[3:] if codec == "utf-8-sig" else data
    for size in (1, 2, 3, 7, 64, 1000, 1 << 20):
        splits = plan_splits([str(path)], split_bytes=size)
        assert [s.index for s in splits] == list(range(len(splits)))
        got = b""
        for split in splits:
            pieces = list(split_bytes(split, chunk_bytes=rng.choice([1, 5, 4096])))
            chunk = b"".join(p for _, p in pieces)
            if chunk:
                first = pieces[0][0]
                # the split's first line starts inside its range, at a line start
                assert split.start <= first < split.end or split.start == 0
                assert first == split.skip or data[first - 1 : first] == b"\n"
            got += chunk
        assert got == body, size
        decoded = "".join("".join(split_text(s, 50)) for s in splits)
        whole = "".join(iter_text_chunks(path))
        assert decoded == (whole if whole.endswith("\n") or not whole else whole + "\n")


def test_discovery_blocks_are_the_split_texts(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"第{i}行文字abc\n" for i in range(5000)), encoding="utf-8")
    blocks = list(text_blocks(path, block_chars=1000))
    assert "".join(blocks) == path.read_text(encoding="utf-8")
    assert all(b.endswith("\n") and len(b) <= 1000 for b in blocks)


def test_wide_codec_is_one_split(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "一行\n两行\n".encode("utf-16-le"))
    splits = plan_splits([str(path)], encoding="utf-16", split_bytes=4)
    assert len(splits) == 1
    assert "".join(split_text(splits[0], 100, True)) == "一行\n两行\n"


def test_expand_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / ".hidden").mkdir()
    for name in ("d/b.txt", "d/a.txt", "d/sub/c.txt", "d/.x.txt", "d/.hidden/y.txt"):
        (tmp_path / name).write_text("字\n", encoding="utf-8")
    d = tmp_path / "d"
    assert expand_inputs(d) == [str(d / "a.txt"), str(d / "b.txt"), str(d / "sub" / "c.txt")]
    assert expand_inputs(str(d / "*.txt")) == [str(d / "a.txt"), str(d / "b.txt")]
    assert expand_inputs(f"file://{d}") == [f"file://{d / 'a.txt'}", f"file://{d / 'b.txt'}",
                                            f"file://{d / 'sub' / 'c.txt'}"]
    uri = f"file://{d / 'a.txt'}"
    assert "".join(split_text(plan_splits(expand_inputs(uri))[0], 10)) == "字\n"
    with pytest.raises(ZhtextError, match="no such file"):
        expand_inputs(tmp_path / "missing.txt")
    with pytest.raises(ZhtextError, match="no file matches"):
        expand_inputs(str(tmp_path / "*.none"))


def test_bad_bytes_name_their_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("好好好\n".encode() * 10 + b"\xff\xfe\n" + "好\n".encode())
    (split,) = plan_splits([str(path)])
    with pytest.raises(ZhtextError, match="cannot decode byte at offset 100"):
        list(split_text(split, 100))
