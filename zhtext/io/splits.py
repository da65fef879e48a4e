"""Inputs cut into byte-range splits of whole lines, read the same way on one machine or many.

A split of a file holds the lines that *start* in its byte range ``[start, end)``, so splits can
be read independently (by threads, or by Ray tasks on other machines) and together they hold every
line exactly once, in order. The ranges are fixed windows of ``split_bytes``: a split's lines do
not depend on who reads it or how many splits a worker takes, which is what makes a distributed
run give the very blocks, and so the very results, of a local one.

The codec is chosen once per file from its head (:func:`zhtext.io.reading.detect_encoding`'s
policy) and travels with each split. A codec whose newline is not the byte ``\\n`` (UTF-16,
UTF-32) cannot be cut by bytes: such a file is one split.

Paths are local paths, directories (their files, sorted, recursively; hidden ones skipped), glob
patterns, or URIs that ``pyarrow.fs`` opens (``s3://``, ``hdfs://``, ``gs://``, ``file://``).
"""

from __future__ import annotations

import codecs
import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from zhtext.errors import ZhtextError
from zhtext.io.reading import (
    CHUNK_BYTES,
    ENCODING_HINT,
    _codec,
    _decode_line,
    _open_binary,
    _pick_codec,
    _raw_lines,
    _split_lines,
    _wide_numbered_lines,
)

__all__ = ["SPLIT_BYTES", "Split", "expand_inputs", "first_line_numbers", "input_stamp",
           "numbered_lines", "plan_splits", "split_bytes", "split_text", "window_newlines"]

SPLIT_BYTES = 4 << 20
_SCHEME = ("s3://", "gs://", "gcs://", "hdfs://", "viewfs://", "file://", "abfs://", "az://")


@dataclass(frozen=True)
class Split:
    """The lines of ``path`` that start in bytes ``[start, end)``; ``index`` is the split's place
    in the whole input, ``codec`` the file's codec, ``skip`` the bytes of a BOM at its start."""

    path: str
    start: int
    end: int
    codec: str
    index: int = 0
    skip: int = 0

    @property
    def wide(self) -> bool:
        return "\n".encode(self.codec) != b"\n"


def _is_uri(path: str) -> bool:
    return path.startswith(_SCHEME)


def _filesystem(path: str):
    try:
        from pyarrow import fs
    except ImportError:
        raise ZhtextError(f"reading {path} needs pyarrow: pip install 'zhtext[ray]'") from None
    try:
        return fs.FileSystem.from_uri(path)
    except Exception as exc:  # noqa: BLE001  (pyarrow raises many kinds; the message is what counts)
        raise ZhtextError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None


def expand_inputs(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Every file that ``sources`` name, in order: a directory's files sorted, a glob's matches
    sorted. A name that matches nothing is one line of error."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[str] = []
    for source in sources:
        path = os.fspath(source)
        if _is_uri(path):
            out += _expand_uri(path)
        elif any(ch in path for ch in "*?["):
            found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not found:
                raise ZhtextError(f"no file matches {path}")
            out += found
        elif os.path.isdir(path):
            found = sorted(
                os.path.join(root, name)
                for root, dirs, names in os.walk(path)
                for name in names
                if not name.startswith(".") and not _hidden_below(path, root)
            )
            if not found:
                raise ZhtextError(f"{path} holds no files")
            out += found
        elif os.path.exists(path):
            out.append(path)
        else:
            raise ZhtextError(f"no such file: {path}")
    return out


def _hidden_below(top: str, root: str) -> bool:
    rel = os.path.relpath(root, top)
    return rel != "." and any(part.startswith(".") for part in rel.split(os.sep))


def _expand_uri(uri: str) -> list[str]:
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise ZhtextError(f"no such file: {uri}")
    if info.type == fs.FileType.File:
        return [uri]
    scheme = uri[: uri.index("://") + 3]
    found = sorted(
        i.path for i in filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        if i.type == fs.FileType.File
        and not any(part.startswith(".") for part in i.path[len(path):].split("/"))
    )
    if not found:
        raise ZhtextError(f"{uri} holds no files")
    return [scheme + p.lstrip("/") if scheme != "file://" else "file://" + p for p in found]


def _open(path: str) -> tuple[BinaryIO, int]:
    """A seekable binary stream of ``path`` and its size."""
    if _is_uri(path):
        filesystem, inner = _filesystem(path)
        try:
            stream = filesystem.open_input_file(inner)
        except Exception as exc:  # noqa: BLE001
            raise ZhtextError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
        return stream, stream.size()
    stream, _ = _open_binary(path)  # the readers' own errors: missing, a directory, permission
    return stream, os.fstat(stream.fileno()).st_size


def input_stamp(path: str) -> tuple[int, int]:
    """``(size, mtime in ns)`` of an input file or URI: what a resumed run checks is unchanged."""
    if _is_uri(path):
        filesystem, inner = _filesystem(path)
        info = filesystem.get_file_info(inner)
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        return int(info.size or 0), int(mtime)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ZhtextError(f"cannot open {path}: {exc.strerror or exc}") from None
    return st.st_size, st.st_mtime_ns


def plan_splits(paths: Iterable[str], encoding: str | None = None,
                split_bytes: int | None = None) -> list[Split]:
    """The splits of every file, in order (an empty file has none), ``split_bytes`` apart
    (default :data:`SPLIT_BYTES`). Each file's head is read here to choose its codec, so a binary
    or wrongly encoded file fails before any work starts."""
    split_bytes = split_bytes or SPLIT_BYTES
    splits: list[Split] = []
    for path in paths:
        stream, size = _open(path)
        with stream:
            head = stream.read(CHUNK_BYTES)
        codec = _pick_codec(head, path, encoding)
        skip = 0
        if head.startswith(codecs.BOM_UTF8) and _codec(codec).name in ("utf-8", "utf-8-sig"):
            codec, skip = "utf-8", len(codecs.BOM_UTF8)
        if size <= skip:
            continue
        if "\n".encode(codec) != b"\n":
            splits.append(Split(path, 0, size, codec, len(splits), skip))
            continue
        for start in range(0, size, split_bytes):
            splits.append(Split(path, start, min(start + split_bytes, size), codec, len(splits), skip))
    return splits


def split_bytes(split: Split, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` chunks of the lines that start in the split's range, in order; together
    they run from its first line's start to just past its last line's ``\\n`` (or the file's end).
    A wide-codec split is the whole file after its BOM."""
    stream, size = _open(split.path)
    with stream:
        begin = split.skip if split.start == 0 else _line_start(stream, split.start)
        if begin is None or begin >= split.end and split.start > 0:
            return
        stream.seek(begin)
        offset = begin
        stop = size if split.wide else None  # the byte past the split's last line, once found
        while stop is None or offset < stop:
            data = stream.read(chunk_bytes if stop is None else min(chunk_bytes, stop - offset))
            if not data:
                return
            if stop is None:
                # The last line is the one running over end - 1: stop after its newline.
                look = max(0, split.end - 1 - offset)
                cut = data.find(b"\n", look) if look < len(data) else -1
                if cut >= 0:
                    data = data[: cut + 1]
                    stop = offset + len(data)
            yield offset, data
            offset += len(data)


def _line_start(stream: BinaryIO, start: int) -> int | None:
    """The first line start at or after ``start``: just past the first newline from ``start - 1``."""
    stream.seek(start - 1)
    offset = start - 1
    while True:
        data = stream.read(CHUNK_BYTES)
        if not data:
            return None
        cut = data.find(b"\n")
        if cut >= 0:
            return offset + cut + 1
        offset += len(data)


def split_text(split: Split, block_chars: int, encoding_given: bool = False) -> Iterator[str]:
    """The split's text in pieces of about ``block_chars`` characters, each ending at a line end
    (a longer line is cut where it reaches the size); the file's last line ends with ``\\n``.
    Undecodable bytes raise ZhtextError naming their offset."""
    yield from cut_blocks(_decoded(split, encoding_given), block_chars)


def _decoded(split: Split, encoding_given: bool) -> Iterator[str]:
    """The split's lines decoded as one stream, chunk by chunk; a bad byte raises ZhtextError."""
    hint = "" if encoding_given else f" ({ENCODING_HINT})"
    decoder = codecs.getincrementaldecoder(split.codec)(errors="strict")
    end = split.start
    for offset, data in split_bytes(split):
        try:
            text = decoder.decode(data, final=False)
        except UnicodeDecodeError as exc:
            at = offset - len(decoder.getstate()[0]) + exc.start
            raise ZhtextError(
                f"{split.path}: cannot decode byte at offset {at} as {split.codec}{hint}"
            ) from None
        end = offset + len(data)
        if text:
            yield text
    try:
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        at = end - len(decoder.getstate()[0])
        raise ZhtextError(
            f"{split.path}: truncated character at byte offset {at} ({split.codec}){hint}"
        ) from None
    if tail:
        yield tail


def window_newlines(split: Split) -> int:
    """The ``\\n`` bytes in ``[start - 1, end - 1)`` (from 0 in a file's first split). Summed over
    the splits of a file before a split, they number its lines (:func:`first_line_numbers`)
    without reading the lines: a cheap first pass that any worker can do for any split."""
    if split.wide:
        return 0
    stream, _ = _open(split.path)
    count = 0
    with stream:
        offset = max(split.start - 1, 0)
        stream.seek(offset)
        while offset < split.end - 1:
            data = stream.read(min(CHUNK_BYTES, split.end - 1 - offset))
            if not data:
                break
            count += data.count(b"\n")
            offset += len(data)
    return count


def first_line_numbers(splits: Sequence[Split], newlines: Sequence[int]) -> list[int]:
    """The 1-based number, in its file, of each split's first line, from the splits of whole
    files in order and their :func:`window_newlines`. A split that holds no line start gets the
    number its next line would have."""
    out: list[int] = []
    seen = 0  # newlines in the current file's windows so far
    for i, split in enumerate(splits):
        if i == 0 or split.path != splits[i - 1].path:
            seen = 0
        # lines before the split: the file's first, and one after each newline before start - 1
        out.append(1 if split.start == 0 else seen + 2)
        seen += newlines[i]
    return out


def numbered_lines(split: Split, first: int) -> Iterator[tuple[int, int, str, str | None]]:
    """``(number, end, text, error)`` for each line of the split, as
    :func:`~zhtext.io.reading.iter_numbered_lines` gives them for a whole file: each line decoded
    on its own (a bad one gives ``""`` and an ``error``, the lines after it still come), numbered
    from ``first``, ``end`` the file offset just past it. A wide-codec split is decoded as one
    stream (where a bad byte raises), as the local reader reads such a file."""
    if split.wide:
        lines = _split_lines(_decoded(split, True), None)
        for _, end, text, error in _wide_numbered_lines(lines, split.codec):
            yield first, end, text, error
            first += 1
        return
    chunks = split_bytes(split)
    head = next(chunks, None)
    if head is None:
        return
    begin, data = head
    stream = _Chunks(chunks)
    for number, (start, end, raw) in enumerate(_raw_lines(stream, data, 0, None), first):
        yield number, begin + end, *_decode_line(raw or b"", split.codec, begin + start)


class _Chunks:
    """The bytes of ``(offset, bytes)`` chunks as a stream that ``read`` gives in chunks."""

    def __init__(self, chunks: Iterator[tuple[int, bytes]]) -> None:
        self._chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        return next(self._chunks, (0, b""))[1]


def cut_blocks(chunks: Iterable[str], block_chars: int) -> Iterator[str]:
    """Decoded ``chunks`` regrouped into pieces of about ``block_chars`` characters that end at a
    line end (a longer line is cut where it reaches the size); the last ends with ``\\n``."""
    text = ""
    for chunk in chunks:
        text += chunk
        start = 0
        while len(text) - start >= block_chars:
            cut = text.rfind("\n", start, start + block_chars) + 1
            if cut <= start:
                cut = start + block_chars
            yield text[start:cut]
            start = cut
        text = text[start:]
    if text:
        yield text if text.endswith("\n") else text + "\n"
