"""Reading layer: encodings, line endings, streaming, errors, atomic writes."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys

import pytest

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output
from zhtext.io.reading import detect_encoding, iter_lines

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
