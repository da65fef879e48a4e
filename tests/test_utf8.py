"""UTF-8 in Numba (zhtext/lexical/utf8.py) against CPython's own codec, and the byte path of
``zhtext segment`` built on it: the same output as the text path, the same errors as the reader."""

from __future__ import annotations

import codecs
import io
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_text_chunks, open_raw
from zhtext.io.writing import write_utf8
from zhtext.lexical.chars import to_codes
from zhtext.lexical.segment import Segmenter
from zhtext.lexical.utf8 import Utf8Error, decode_utf8, encode_utf8

# Bytes at the edges of every rule: leads of each length and their narrower second bytes
# (E0, ED, F0, F4), continuation bytes at the range ends, bytes that never occur (C0, C1, F5-FF).
EDGE_BYTES = [0x00, 0x0A, 0x0D, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
              0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
VALID = "a\n\r中文，😀\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff"


def cpython(data: bytes) -> tuple[list[int], int, bool]:
    """What CPython's strict incremental decoder makes of ``data``: the codepoints before the
    first error, its offset (-1: none) and whether only the end of the data cut it short."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError as exc:
        return [ord(c) for c in data[: exc.start].decode("utf-8")], exc.start, False
    pending = len(decoder.getstate()[0])
    if pending:
        return [ord(c) for c in text], len(data) - pending, True
    return [ord(c) for c in text], -1, False


def pieces() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from(list(VALID)).map(lambda c: c.encode("utf-8", "surrogatepass"))
    edge = st.sampled_from(EDGE_BYTES).map(lambda b: bytes([b]))
    return st.lists(st.one_of(valid, edge), max_size=12).map(b"".join)


@settings(max_examples=600, deadline=None)
@given(pieces())
def test_decoding_refuses_what_cpython_refuses_where_it_does(data):
    codes, bad, truncated = decode_utf8(np.frombuffer(data, np.uint8))
    assert (codes.tolist(), bad, truncated) == cpython(data)


def test_every_two_and_three_byte_prefix_against_cpython():
    """Exhaustive over two bytes (then a continuation, or the end) from the edge bytes."""
    for a in range(0x80, 0x100):
        for b in EDGE_BYTES + [0x81, 0xBE]:
            for tail in (b"", b"\x80", b"\xbf\x80", b"A"):
                data = bytes([a, b]) + tail
                codes, bad, truncated = decode_utf8(np.frombuffer(data, np.uint8))
                assert (codes.tolist(), bad, truncated) == cpython(data), data


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_encoding_is_str_encode(text):
    assert encode_utf8(to_codes(text)).tobytes() == text.encode("utf-8")
    data = text.encode("utf-8")
    codes, bad, _ = decode_utf8(np.frombuffer(data, np.uint8))
    assert bad == -1 and codes.tolist() == [ord(c) for c in text]


def test_a_lone_surrogate_is_encoded_as_surrogatepass_does():
    assert encode_utf8(to_codes("a\ud800b")).tobytes() == "a\ud800b".encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter()


TEXT = ("我来到北京清华大学，学习自然语言处理。\r\n黛玉笑道：“你这会子又说这话了。”\n\n\r\n"
        "C++ 和 iPhone15 也照样切😀，圆周率3.14%。\r\r\n今天 天气\r不错\n\r最后一行没有换行符")


@pytest.mark.parametrize(("mode", "hmm"), [("default", True), ("default", False),
                                           ("search", True), ("all", False)])
def test_byte_chunks_give_the_text_paths_output(seg, mode, hmm):
    """Bytes cut anywhere (inside a character, between \\r and \\n), any block size, any jobs."""
    data = (TEXT * 7).encode("utf-8")
    want = seg.segment_text(TEXT * 7, " | ", mode=mode, hmm=hmm)
    assert seg.segment_bytes(data, " | ", mode=mode, hmm=hmm) == want.encode("utf-8")
    rng = random.Random(mode)
    for jobs, block in ((1, 1), (2, 40), (3, 1 << 18)):
        cuts = sorted(rng.sample(range(len(data)), 60))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        pairs = list(seg.segment_chunks(chunks, " | ", mode=mode, hmm=hmm, jobs=jobs,
                                        block_chars=block))
        assert b"".join(out for _, out in pairs) == want.encode("utf-8")
        assert b"".join(block for block, _ in pairs) == data


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
def test_segment_file_on_utf8_bytes(seg, tmp_path, bom):
    src = tmp_path / "in.txt"
    src.write_bytes(bom + (TEXT * 3000).encode("utf-8"))  # several blocks
    seen = []
    for jobs in (1, 2):
        seg.segment_file(src, tmp_path / "out.txt", " / ", jobs=jobs, progress=seen.append)
        want = seg.segment_text(TEXT * 3000, " / ")
        same = (tmp_path / "out.txt").read_bytes() == want.encode("utf-8")  # \r kept as is
        assert same, f"jobs {jobs}"  # (a bool: pytest would diff the megabytes)
    assert all(isinstance(b, bytes) for b in seen) and len(seen) > 2
    assert b"".join(seen) == (TEXT * 3000).encode("utf-8") * 2, "progress: the input twice"
    src.write_bytes(bom)
    seg.segment_file(src, tmp_path / "empty.txt")
    assert (tmp_path / "empty.txt").read_bytes() == b""


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize(("bad", "truncated"), [(b"\xff", False), (b"\xed\xa0\x80", False),
                                                (b"\xe4\xb8", True)])
def test_a_bad_byte_deep_in_a_utf8_file_is_the_readers_error(seg, tmp_path, bom, bad, truncated):
    """Far past the sample that chose the codec, in a later block: the reader's message and
    offset, and no output."""
    good = ("我来到北京\n" * 40000).encode("utf-8")
    src = tmp_path / "in.txt"
    src.write_bytes(bom + good + b"ok" + bad + (b"" if truncated else "后面\n".encode()))
    with pytest.raises(ZhtextError) as theirs:
        list(iter_text_chunks(src))
    for jobs in (1, 2):
        with pytest.raises(ZhtextError) as ours:
            seg.segment_file(src, tmp_path / "out.txt", jobs=jobs)
        assert str(ours.value) == str(theirs.value)
        assert not isinstance(ours.value, Utf8Error)
        offset = len(bom) + len(good) + 2
        assert (f"offset {offset} " in str(ours.value)) and (
            ("truncated" in str(ours.value)) == truncated)
        assert not (tmp_path / "out.txt").exists()


def test_gb18030_and_other_codecs_keep_the_text_path(seg, tmp_path):
    text = TEXT.replace("😀", "")
    src = tmp_path / "gb.txt"
    src.write_bytes(text.encode("gb18030"))
    with open_raw(src) as raw:
        assert not raw.utf8 and raw.codec == "gb18030"
    seen = []
    seg.segment_file(src, tmp_path / "out.txt", progress=seen.append)
    assert (tmp_path / "out.txt").read_bytes() == seg.segment_text(text).encode("utf-8")
    assert "".join(seen) == text
    src.write_bytes(TEXT.encode("utf-8"))
    seg.segment_file(src, tmp_path / "out.txt", encoding="UTF8")  # another name of the codec
    assert (tmp_path / "out.txt").read_bytes() == seg.segment_text(TEXT).encode("utf-8")


def test_write_utf8_goes_through_the_buffer_only_for_a_utf8_handle():
    raw = io.BytesIO()
    handle = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    handle.write("前")
    write_utf8(handle, "中文\n".encode())
    handle.flush()
    assert raw.getvalue() == "前中文\n".encode()
    raw = io.BytesIO()
    handle = io.TextIOWrapper(raw, encoding="gb18030", newline="\n")
    write_utf8(handle, "中文\n".encode())
    handle.flush()
    assert raw.getvalue() == "中文\n".encode("gb18030")
    plain = io.StringIO()
    write_utf8(plain, "中文".encode())
    assert plain.getvalue() == "中文"
