"""Reading layer: encodings, line endings, streaming, errors, atomic writes."""

from __future__ import annotations

import codecs
import os
import random
import re
import subprocess
import sys
import threading

import pytest

from zhtext.errors import ZhtextError
from zhtext.io.reading import detect_encoding, iter_lines
from zhtext.io.writing import atomic_output

TEXT = "第一行：中文与English混排\n第二行😀𠀀\n\n最后一行"


@pytest.mark.parametrize(
    "raw",
    [
        TEXT.encode("utf-8"),
        codecs.BOM_UTF8 + TEXT.encode("utf-8"),
        TEXT.encode("gb18030"),
        TEXT.replace("\n", "\r\n").encode("utf-8"),
    ],
    ids=["utf8", "utf8-bom", "gb18030", "crlf"],
)
def test_encodings_and_line_endings(tmp_path, raw):
    path = tmp_path / "in.txt"
    path.write_bytes(raw)
    assert list(iter_lines(path)) == TEXT.split("\n")


def test_chunk_boundaries_do_not_split_characters_or_crlf(tmp_path, monkeypatch):
    import zhtext.io.reading as zio

    text = ("汉字abc\r\n" * 50) + "尾"
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    for size in (1, 2, 3, 5, 7):
        monkeypatch.setattr(zio, "CHUNK_BYTES", size)
        lines = list(iter_lines(path))
        assert lines == text.replace("\r\n", "\n").split("\n")


def test_long_line_in_pieces(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("字" * 10_000 + "\nb", encoding="utf-8")
    pieces = list(iter_lines(path, max_chars=1000))
    assert "".join(pieces[:-1]) == "字" * 10_000 and pieces[-1] == "b"
    assert max(len(p) for p in pieces) <= 1 << 20


def test_undecodable_byte_offset(tmp_path):
    good = "好" * 10
    path = tmp_path / "bad.txt"
    path.write_bytes(good.encode("utf-8") + b"\xff\xfe" + "后".encode("utf-8"))
    with pytest.raises(ZhtextError, match="offset 30"):
        list(iter_lines(path, encoding="utf-8"))


def test_binary_and_missing(tmp_path):
    path = tmp_path / "bin.dat"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ZhtextError, match="binary"):
        list(iter_lines(path))
    with pytest.raises(ZhtextError, match="no such file"):
        list(iter_lines(tmp_path / "missing.txt"))
    with pytest.raises(ZhtextError, match="directory"):
        list(iter_lines(tmp_path))


def test_detect_encoding():
    assert detect_encoding("中文".encode("gb18030")) == "gb18030"
    assert detect_encoding("中文".encode("utf-8")) == "utf-8"


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as out:
            out.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as out:
        out.write("whole\n")
    assert target.read_text() == "whole\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_stdin(tmp_path):
    code = "from zhtext.io import iter_lines; print(list(iter_lines('-')))"
    res = subprocess.run(
        [sys.executable, "-c", code], input="甲\r\n乙".encode("gb18030"), capture_output=True
    )
    assert res.returncode == 0
    assert res.stdout.decode().strip() == "['甲', '乙']"


@pytest.mark.parametrize("codec", ["utf-8", "gb18030"])
def test_one_codec_policy_for_both_line_readers(tmp_path, codec):
    """The strict reader (whole-file commands) and the numbered one (pipe) choose the same codec,
    so a good line decodes the same in both; a bad line stops the first and is reported by the
    second, at the same place."""
    from zhtext.io.reading import iter_numbered_lines

    lines = [f"第{i}行：自然语言处理，ok {i}" for i in range(400)]
    path = tmp_path / "good.txt"
    path.write_bytes("\n".join(lines).encode(codec) + b"\n")
    assert list(iter_lines(path)) == lines
    assert [text for _, _, text, error in iter_numbered_lines(path) if error is None] == lines

    damaged = bytearray(path.read_bytes())
    at = damaged.index("第300行".encode(codec))
    damaged[at:at + 1] = b"\xff"  # no codec decodes 0xff as a lead byte
    path.write_bytes(bytes(damaged))
    numbered = list(iter_numbered_lines(path))
    assert [n for n, _, _, error in numbered if error] == [301]
    assert [text for n, _, text, _ in numbered if n != 301] == lines[:300] + lines[301:]
    with pytest.raises(ZhtextError, match=f"offset {at} as {codec}"):
        list(iter_lines(path))


# ---------------------------------------------------------------- UTF-16 and UTF-32, hints, errors at the call

WIDE = "第一行：自然语言处理\n一丁七万丈三上下不与\nEnglish words too\n"


@pytest.mark.parametrize(
    ("codec", "named"),
    [
        ("utf-16", "UTF-16; give --encoding utf-16"),
        ("utf-32", "UTF-32; give --encoding utf-32"),
        ("utf-16-le", "UTF-16 (little-endian, no byte-order mark); give --encoding utf-16-le"),
        ("utf-16-be", "UTF-16 (big-endian, no byte-order mark); give --encoding utf-16-be"),
        ("utf-32-le", "UTF-32 (little-endian, no byte-order mark); give --encoding utf-32-le"),
    ],
)
def test_utf16_and_utf32_are_named_with_the_encoding_to_give(tmp_path, codec, named):
    path = tmp_path / "wide.txt"
    path.write_bytes(WIDE.encode(codec))
    with pytest.raises(ZhtextError, match=f"^{path} looks like {re.escape(named)}$"):
        iter_lines(path)
    assert list(iter_lines(path, codec)) == WIDE.splitlines()  # the named encoding reads it


@pytest.mark.parametrize("text", ["只有中文的一行一二三一", "only English here", "一一一\n"])
def test_bom_less_utf16_byte_order_is_told_apart(text):
    from zhtext.io.reading import wide_encoding

    assert wide_encoding(text.encode("utf-16-le")) == "utf-16-le"
    assert wide_encoding(text.encode("utf-16-be")) == "utf-16-be"


def test_binary_data_is_not_taken_for_utf16():
    from zhtext.io.reading import wide_encoding

    rng = random.Random(0)
    for sample in (bytes(range(256)) * 4, b"\x00" * 64, bytes(rng.randrange(256) for _ in range(4096))):
        assert wide_encoding(sample) is None
        with pytest.raises(ZhtextError, match="binary"):
            detect_encoding(sample)


def test_utf16_given_without_a_byte_order_mark_names_the_byte_order(tmp_path):
    path = tmp_path / "le.txt"
    path.write_bytes(WIDE.encode("utf-16-le"))
    with pytest.raises(ZhtextError, match="has no UTF-16 byte-order mark; give --encoding utf-16-le$"):
        iter_lines(path, "utf-16")
    path.write_bytes(WIDE.encode("utf-32-le"))
    with pytest.raises(ZhtextError, match="looks like UTF-32 .*; give --encoding utf-32-le$"):
        iter_lines(path, "utf-16")


def test_bad_bytes_past_the_first_chunk_keep_the_encoding_hint(tmp_path):
    from zhtext.io.reading import CHUNK_BYTES, ENCODING_HINT

    good = ("中文一行\n" * (CHUNK_BYTES // 12 + 10)).encode("utf-8")
    assert len(good) > CHUNK_BYTES
    path = tmp_path / "late.txt"
    path.write_bytes(good + b"\xff\xfe\n")
    with pytest.raises(ZhtextError, match=re.escape(f"offset {len(good)} as utf-8 ({ENCODING_HINT})")):
        list(iter_lines(path))
    path.write_bytes(b"\xff" + good)  # bad from the start: the same hint
    with pytest.raises(ZhtextError, match=re.escape(f"({ENCODING_HINT})")):
        list(iter_lines(path))
    # A codec the caller named is not second-guessed.
    with pytest.raises(ZhtextError) as named:
        list(iter_lines(path, "utf-8"))
    assert ENCODING_HINT not in str(named.value)


def test_a_bad_file_fails_at_the_call_a_fifo_when_read(tmp_path):
    """So that a command checks its input before it loads a model; a FIFO or stdin is not read
    before it is iterated, since its first read waits for the writer."""
    from zhtext.io.reading import iter_numbered_lines, iter_text_chunks

    binary = tmp_path / "bin.dat"
    binary.write_bytes(bytes(range(256)) * 4)
    for reader in (iter_lines, iter_text_chunks, iter_numbered_lines):
        with pytest.raises(ZhtextError, match="no such file"):
            reader(tmp_path / "missing.txt")
        with pytest.raises(ZhtextError, match="binary"):
            reader(binary)
        with pytest.raises(ZhtextError, match="directory"):
            reader(tmp_path)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    lines = iter_lines(fifo)  # returns at once: nothing is opened yet
    writer = threading.Thread(target=lambda: fifo.write_text("甲\n乙\n", encoding="utf-8"))
    writer.start()
    assert list(lines) == ["甲", "乙"]
    writer.join()


def test_a_short_binary_header_is_not_taken_for_utf16():
    # As UTF-16 these read as three CJK characters and a Latin one: not text enough.
    from zhtext.io.reading import wide_encoding

    assert wide_encoding(b"\x00\x01binary") is None


def test_spill_list_reads_back_what_it_held_after_moving_to_a_file():
    import numpy as np

    from zhtext.io.spill import SpillList

    arrays = [np.arange(n, dtype=dtype).reshape(shape) for n, dtype, shape in
              [(6, np.uint16, (6,)), (12, np.float32, (3, 4)), (5, np.int64, (5,)), (8, np.float32, (2, 4))]]
    store = SpillList(budget=60)
    for count, array in enumerate(arrays, 1):
        store.append(array)
        assert len(store) == count
    assert store.spilled  # 12 + 48 + 40 bytes passed the budget on the third array
    for got, want in zip(store, arrays):
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(store[1], arrays[1])  # random access too
    store.close()
    assert len(store) == 0
