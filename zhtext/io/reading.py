"""Reading text from paths or stdin, and writing outputs atomically.

Input is streamed in fixed-size byte chunks, so neither a huge file nor a huge line has to fit in
memory at once. The encoding is detected from the first chunk: a UTF-8 BOM, then strict UTF-8, then
GB18030; ``encoding=`` forces one. Undecodable bytes, binary files and missing files raise
:class:`~zhtext.errors.ZhtextError` with a message fit for one line of a terminal.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from zhtext.errors import ZhtextError

CHUNK_BYTES = 1 << 20

PathLike = str | os.PathLike


def _open_binary(source: PathLike) -> tuple[BinaryIO, str]:
    """Open a path (or ``-`` for stdin) for binary reading; return the stream and a display name."""
    if str(source) == "-":
        return sys.stdin.buffer, "<stdin>"
    path = Path(source)
    if path.is_dir():
        raise ZhtextError(f"{path} is a directory, not a text file")
    try:
        return open(path, "rb"), str(path)
    except FileNotFoundError:
        raise ZhtextError(f"no such file: {path}") from None
    except PermissionError:
        raise ZhtextError(f"permission denied: {path}") from None
    except OSError as exc:
        raise ZhtextError(f"cannot open {path}: {exc.strerror or exc}") from None


def _looks_binary(sample: bytes) -> bool:
    # NUL never occurs in UTF-8 or GB18030 text; a run of other control bytes is a strong hint too.
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample[:4096] if b < 9 or 13 < b < 32 and b != 27)
    return controls > 0.1 * min(len(sample), 4096)


def detect_encoding(sample: bytes, name: str = "<input>") -> str:
    """Pick the codec for a stream from its first bytes: ``utf-8-sig``, ``utf-8`` or ``gb18030``.

    The one codec policy of every reader: a BOM, else the codec that decodes the whole sample
    (UTF-8 first), else the one under which more of its lines decode, so that a few damaged lines
    never switch a file to the wrong codec; the readers then report the bad bytes themselves.
    Raises ZhtextError for binary data.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if _looks_binary(sample):
        raise ZhtextError(f"{name} looks like a binary file, not text")
    for codec in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(codec)().decode(sample, final=False)
            return codec
        except UnicodeDecodeError:
            pass
    return _likelier_codec(sample)


def _codec(encoding: str) -> codecs.CodecInfo:
    try:
        return codecs.lookup(encoding)
    except LookupError:
        raise ZhtextError(f"unknown encoding: {encoding}") from None


def _pick_codec(sample: bytes, name: str, encoding: str | None) -> str:
    """The codec for a stream that starts with ``sample``: ``encoding`` if given (it must exist, and
    binary data is refused unless it is UTF-16 or UTF-32, whose text has NUL bytes), else detected."""
    if encoding is None:
        return detect_encoding(sample, name) if sample else "utf-8"
    wide = _codec(encoding).name.startswith(("utf-16", "utf-32"))
    if _looks_binary(sample) and not wide:
        raise ZhtextError(f"{name} looks like a binary file, not text")
    return encoding


def iter_text_chunks(
    source: PathLike, encoding: str | None = None, chunk_bytes: int | None = None
) -> Iterator[str]:
    """Decode a path or ``-`` chunk by chunk; yields ``str`` pieces with newlines untouched."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    stream, name = _open_binary(source)
    try:
        first = stream.read(chunk_bytes)
        encoding = _pick_codec(first, name, encoding)
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        consumed = 0  # bytes handed to the decoder before the current chunk
        data = first
        while data:
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=False)
            except UnicodeDecodeError as exc:
                offset = consumed - pending + exc.start
                raise ZhtextError(
                    f"{name}: cannot decode byte at offset {offset} as {encoding}"
                ) from None
            consumed += len(data)
            if text:
                yield text
            data = stream.read(chunk_bytes)
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            pending = len(decoder.getstate()[0])
            raise ZhtextError(
                f"{name}: truncated character at byte offset {consumed - pending} ({encoding})"
            ) from None
        if tail:
            yield tail
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def iter_lines(
    source: PathLike, encoding: str | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """Yield the lines of a path or ``-`` without their line endings (``\\n`` or ``\\r\\n``).

    Only ``\\n`` ends a line (as ``wc -l`` counts), so one output line per input line holds. With
    ``max_chars``, a line longer than that is yielded in pieces of about ``max_chars`` characters,
    so memory stays bounded whatever the input; without it, lines are whole.
    """
    pieces: list[str] = []  # the current line so far
    held = 0
    for chunk in iter_text_chunks(source, encoding):
        parts = chunk.split("\n")
        for part in parts[:-1]:
            pieces.append(part)
            line = "".join(pieces)
            pieces, held = [], 0
            yield line[:-1] if line.endswith("\r") else line
        if parts[-1]:
            pieces.append(parts[-1])
            held += len(parts[-1])
            if max_chars is not None and held > max_chars:
                yield "".join(pieces)
                pieces, held = [], 0
    if pieces:
        line = "".join(pieces)
        yield line[:-1] if line.endswith("\r") else line


def iter_many_lines(
    sources: Iterable[PathLike], encoding: str | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """:func:`iter_lines` over several sources, one after another."""
    for source in sources:
        yield from iter_lines(source, encoding, max_chars)


def iter_numbered_lines(
    source: PathLike, encoding: str | None = None, max_bytes: int | None = None
) -> Iterator[tuple[int, int, str, str | None]]:
    """``(number, end, text, error)`` for each line of a path or ``-``: its 1-based number, the
    byte offset just past it (for progress), its text without the ending, and ``None``.

    Unlike :func:`iter_lines`, each line is decoded on its own, so a bad line gives
    ``(number, end, "", "cannot decode ...")`` and the lines after it still come; so does a line
    over ``max_bytes`` ("longer than ..."), which is skipped without being held in memory. The
    codec is chosen as :func:`iter_lines` chooses it (:func:`detect_encoding`). A codec whose newline is not
    the byte ``\\n`` (UTF-16, UTF-32) is read with :func:`iter_lines`, where a bad byte ends the run.
    """
    if encoding is not None and "\n".encode(_codec(encoding).name) != b"\n":
        encoder = codecs.getincrementalencoder(encoding)()
        end = 0
        for number, line in enumerate(iter_lines(source, encoding), 1):
            end += len(encoder.encode(line + "\n"))
            yield number, end, line, None
        return
    stream, name = _open_binary(source)
    try:
        first = stream.read(CHUNK_BYTES)
        codec = _pick_codec(first, name, encoding)
        start = 0
        if first.startswith(codecs.BOM_UTF8) and _codec(codec).name in ("utf-8", "utf-8-sig"):
            start, codec = len(codecs.BOM_UTF8), "utf-8"
        for number, (begin, end, raw) in enumerate(_raw_lines(stream, first, start, max_bytes), 1):
            if raw is None:
                yield number, end, "", f"longer than {max_bytes} bytes, not read"
            else:
                yield number, end, *_decode_line(raw, codec, begin)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _raw_lines(
    stream: BinaryIO, first: bytes, start: int, max_bytes: int | None
) -> Iterator[tuple[int, int, bytes | None]]:
    """(start offset, end offset, bytes) of each line from ``first[start:]`` on, the stream after
    it; the bytes are ``None`` for a line over ``max_bytes``, which is never held whole."""
    held: list[bytes] = []  # the current line so far (dropped once it is over max_bytes)
    size, begin, data = 0, start, first[start:]
    while data:
        parts = data.split(b"\n")
        for part in parts[:-1]:
            size += len(part)
            too_long = max_bytes is not None and size > max_bytes
            yield begin, begin + size + 1, None if too_long else (b"".join([*held, part]) if held else part)
            begin += size + 1
            held, size = [], 0
        size += len(parts[-1])
        if max_bytes is not None and size > max_bytes:
            held = []
        elif parts[-1]:
            held.append(parts[-1])
        data = stream.read(CHUNK_BYTES)
    if size:
        yield begin, begin + size, None if max_bytes is not None and size > max_bytes else b"".join(held)


def _decode_line(raw: bytes, codec: str, offset: int) -> tuple[str, str | None]:
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        return "", f"cannot decode byte at offset {offset + exc.start} as {codec}"
    return text.removesuffix("\r"), None


def _likelier_codec(sample: bytes) -> str:
    # A few bad lines must not decide the codec for the whole file: count the lines that decode.
    lines = sample.split(b"\n")[:-1] or [sample]

    def failures(codec: str) -> int:
        return sum(_decode_line(raw, codec, 0)[1] is not None for raw in lines)

    return min(("utf-8", "gb18030"), key=failures)


def batched_lines(lines: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    """Group lines into lists of about ``max_chars`` characters (newlines counted), in order.

    The one place where streamed work is cut into batches, so memory stays bounded.
    """
    batch: list[str] = []
    held = 0
    for line in lines:
        batch.append(line)
        held += len(line) + 1
        if held >= max_chars:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


