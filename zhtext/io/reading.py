"""Reading text from paths or stdin, and writing outputs atomically.

Input is streamed in fixed-size byte chunks, so neither a huge file nor a huge line has to fit in
memory at once. The encoding is detected from the first chunk: a UTF-8 BOM, then strict UTF-8, then
GB18030; ``encoding=`` forces one. UTF-16 and UTF-32 are recognised (by their byte-order mark, or
by where their NUL bytes fall, whatever the script) only to say so: they are read with
``encoding=``. Undecodable bytes, binary files and missing files raise
:class:`~zhtext.errors.ZhtextError` with a message fit for one line of a terminal.

The readers open a regular file and check its first chunk when they are called, not when they are
first iterated, so that a command finds a missing or unreadable input before it loads a model.
"""

from __future__ import annotations

import codecs
import itertools
import os
import stat
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from zhtext.errors import ZhtextError

if TYPE_CHECKING:  # Python 3.10 has no typing.Self
    from typing_extensions import Self

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


# Decoding with a wrong codec is reported with this hint when zhtext chose the codec itself.
ENCODING_HINT = "use --encoding to name the right one"

# Byte-order marks, UTF-32's first: its little-endian mark starts with UTF-16's.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _common_share(text: str) -> tuple[float, float]:
    """(share of characters usual in Chinese, Japanese or English text, share of ASCII) of
    a decoded sample."""
    common = ascii_ = 0
    for ch in text:
        cp = ord(ch)
        if 0x20 <= cp < 0x7F or ch in "\t\n\r":
            common += 1
            ascii_ += 1
        elif (0x2000 <= cp < 0x2070 or 0x3000 <= cp < 0x3100 or 0x3400 <= cp < 0xA000
              or 0xF900 <= cp < 0xFB00 or 0xFF00 <= cp < 0xFFF0):
            common += 1
    return common / max(len(text), 1), ascii_ / max(len(text), 1)


def wide_encoding(sample: bytes) -> str | None:
    """The UTF-16 or UTF-32 codec that ``sample`` (the first bytes of a stream) is written in, or
    None: ``utf-16``/``utf-32`` after a byte-order mark the sample decodes after, else the byte
    order under which the sample reads as Chinese or English text (the NUL bytes of UTF-16 fall
    where the high bytes of ASCII characters are), else the one whose NUL bytes fall where the
    high bytes of Latin-1 characters are, in text of any script (accents, Cyrillic, kana, emoji)."""
    head = sample[:4096]
    for bom, codec in _WIDE_BOMS:
        if head.startswith(bom):
            return codec if _decodes(head, codec) is not None else None
    if b"\x00" not in head:
        return None
    best, best_score = None, (0.9, 0.0)  # 90% usual characters at least
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        text = _decodes(head, codec)
        if text is None:
            continue
        score = _common_share(text)
        # English read in the wrong byte order is all CJK: the ASCII share breaks the tie.
        if score > best_score:
            best, best_score = codec, score
    return best if best is not None else _wide_by_nuls(head)


# Not characters of text: controls, unassigned code points, private use, lone surrogates.
_NOT_TEXT = frozenset({"Cc", "Cn", "Co", "Cs"})


def _wide_by_nuls(head: bytes) -> str | None:
    """The wide codec of text outside the usual ranges, by where its NUL bytes fall: in UTF-16 at
    the high byte of each character below U+0100 (spaces, newlines, digits, Latin-1), hardly ever
    at the low byte; not in the way of ASCII read out of step; and the sample reads as text (90%).
    UTF-32's top bytes are NUL by construction: decoding is the test."""
    best, best_ascii = None, -1.0
    for codec, high in (("utf-16-le", 1), ("utf-16-be", 0), ("utf-32-le", None), ("utf-32-be", None)):
        text = _decodes(head, codec)
        if not text or _text_share(text) < 0.9:
            continue
        if high is not None:
            body = head[: len(head) // 2 * 2]
            highs, lows = body[high::2], body[1 - high :: 2]
            nuls = highs.count(0)
            # A NUL low byte is U+xx00 or half a surrogate pair: rare, never most NULs.
            if nuls < max(1, len(highs) // 100) or lows.count(0) > nuls:
                continue
            # ASCII strings read one byte out of step (a binary's string table) are characters
            # whose two bytes are both printable ASCII, spread over dozens of high bytes; text
            # keeps to one block and Latin-1 (Cyrillic: 0x04 and 0x00), or to blocks past ASCII
            # (Hangul).
            block = max((highs.count(b) for b in set(highs) - {0}), default=0)
            ascii_pairs = sum(32 <= h < 127 and 32 <= lo < 127 for h, lo in zip(highs, lows))
            if 2 * (nuls + block) < len(highs) and 2 * ascii_pairs >= len(highs):
                continue
        ascii_ = _common_share(text)[1]
        if ascii_ > best_ascii:
            best, best_ascii = codec, ascii_
    return best


def _text_share(text: str) -> float:
    """The share of ``text`` that is characters of text (letters, marks, digits, punctuation,
    symbols, spaces, tabs and line ends) in any script."""
    good = sum(1 for ch in text if ch in "\t\n\r" or unicodedata.category(ch) not in _NOT_TEXT)
    return good / max(len(text), 1)


def _decodes(head: bytes, codec: str) -> str | None:
    """``head`` decoded, a character cut at its end left out; None if it does not decode."""
    try:
        return codecs.getincrementaldecoder(codec)().decode(head, final=False)
    except UnicodeError:
        return None


def _wide_message(name: str, codec: str) -> str:
    label = codec[:6].upper()
    order = {"le": " (little-endian, no byte-order mark)", "be": " (big-endian, no byte-order mark)"}
    return f"{name} looks like {label}{order.get(codec[7:], '')}; give --encoding {codec}"


def _refuse_binary(sample: bytes, name: str) -> None:
    wide = wide_encoding(sample)
    if wide is not None:
        raise ZhtextError(_wide_message(name, wide))
    if _looks_binary(sample):
        raise ZhtextError(f"{name} looks like a binary file, not text")


def detect_encoding(sample: bytes, name: str = "<input>") -> str:
    """Pick the codec for a stream from its first bytes: ``utf-8-sig``, ``utf-8`` or ``gb18030``.

    The one codec policy of every reader: a BOM, else the codec that decodes the whole sample
    (UTF-8 first), else the one under which more of its lines decode, so that a few damaged lines
    never switch a file to the wrong codec; the readers then report the bad bytes themselves.
    Raises ZhtextError for binary data, and for UTF-16 or UTF-32 naming the ``--encoding`` to give.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    _refuse_binary(sample, name)
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
    codec = _codec(encoding).name
    if codec in ("utf-16", "utf-32") and sample and not sample.startswith(
            tuple(bom for bom, wide in _WIDE_BOMS if wide == codec)):
        # Python's utf-16 and utf-32 need the mark to know the byte order.
        guess = wide_encoding(sample)
        if guess is not None and not guess.startswith(codec):
            raise ZhtextError(_wide_message(name, guess))  # UTF-32 given for UTF-16, or the reverse
        hint = guess or f"{codec}-le or {codec}-be"
        raise ZhtextError(f"{name} has no {codec.upper()} byte-order mark; give --encoding {hint}")
    if not codec.startswith(("utf-16", "utf-32")):
        _refuse_binary(sample, name)
    return encoding


def _is_stream(source: PathLike) -> bool:
    """Whether ``source`` is stdin, a FIFO or a device: read only when iterated, since its first
    read waits for the writer."""
    if str(source) == "-":
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False  # missing or unreadable: opened at once, to say so
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _started(items: Iterator, source: PathLike) -> Iterator:
    """``items`` with its first one read now when ``source`` is a file, so that a missing, binary
    or undecodable start raises at the call."""
    if _is_stream(source):
        return items
    first = next(items, _END)
    return items if first is _END else itertools.chain([first], items)


_END = object()


def iter_text_chunks(
    source: PathLike, encoding: str | None = None, chunk_bytes: int | None = None
) -> Iterator[str]:
    """Decode a path or ``-`` chunk by chunk; yields ``str`` pieces with newlines untouched.

    A file that is missing, binary or undecodable in its first chunk raises here, at the call."""
    return _started(_text_chunks(source, encoding, chunk_bytes or CHUNK_BYTES), source)


def _text_chunks(source: PathLike, encoding: str | None, chunk_bytes: int) -> Iterator[str]:
    with open_raw(source, encoding, chunk_bytes) as raw:
        yield from raw.text_chunks()


class RawText:
    """An input opened for reading as bytes, its codec picked from its first chunk (the one
    policy of every reader: a missing, binary or unnamed-UTF-16 input fails at the opening).

    :meth:`text_chunks` decodes it (what :func:`iter_text_chunks` yields); a UTF-8 input
    (:attr:`utf8`) may instead be taken as its raw :meth:`byte_chunks`, whose reader reports a
    bad byte with :meth:`decode_error`, in the words the decoder would use. Use it as a context
    manager, or :meth:`close` it.
    """

    def __init__(self, source: PathLike, encoding: str | None, chunk_bytes: int):
        self.stream, self.name = _open_binary(source)
        self.chunk_bytes = chunk_bytes
        self._encoding = encoding
        self._hint = "" if encoding else f" ({ENCODING_HINT})"
        self._first: bytes | None = None
        if not _is_stream(source):  # a stream's first read waits for its writer: done on demand
            self._begin()

    def _begin(self) -> bytes:
        """Read the first chunk and pick the codec, once; the first chunk."""
        if self._first is None:
            try:
                first = self.stream.read(self.chunk_bytes)
                self._codec = _pick_codec(first, self.name, self._encoding)
            except BaseException:
                self.close()
                raise
            self._first = first
        return self._first

    @property
    def codec(self) -> str:
        """The codec the input is decoded with (given, or picked from its first chunk)."""
        self._begin()
        return self._codec

    @property
    def utf8(self) -> bool:
        """Whether the input is UTF-8 (with or without a BOM)."""
        return codecs.lookup(self.codec).name in ("utf-8", "utf-8-sig")

    @property
    def start(self) -> int:
        """Where the text starts: after a BOM that the codec drops."""
        first = self._begin()
        drops_bom = codecs.lookup(self.codec).name == "utf-8-sig"
        return len(codecs.BOM_UTF8) if drops_bom and first.startswith(codecs.BOM_UTF8) else 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()

    def byte_chunks(self) -> Iterator[bytes]:
        """The raw bytes from :attr:`start` on, chunk by chunk (not checked: see the class)."""
        data = self._begin()[self.start :]
        while data:
            yield data
            data = self.stream.read(self.chunk_bytes)

    def chunks(self) -> Iterator[bytes] | Iterator[str]:
        """A UTF-8 input's :meth:`byte_chunks`, any other's :meth:`text_chunks`; a stream is
        first read when the first chunk is asked for."""
        yield from self.byte_chunks() if self.utf8 else self.text_chunks()

    def decode_error(self, offset: int, truncated: bool = False) -> ZhtextError:
        """The error for a bad byte at ``offset`` in the file (a character cut short by the
        end of the input: ``truncated``)."""
        if truncated:
            return ZhtextError(f"{self.name}: truncated character at byte offset {offset} "
                               f"({self.codec}){self._hint}")
        return ZhtextError(f"{self.name}: cannot decode byte at offset {offset} as "
                           f"{self.codec}{self._hint}")

    def text_chunks(self) -> Iterator[str]:
        """The input decoded, chunk by chunk, newlines untouched."""
        # After a BOM, plain UTF-8 from the BOM's end: utf-8-sig's errors would count from there
        decoder = codecs.getincrementaldecoder("utf-8" if self.start else self.codec)(errors="strict")
        consumed = self.start  # bytes handed to the decoder (or skipped) before the current chunk
        data = self._begin()[self.start :]
        while data:
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, final=False)
            except UnicodeDecodeError as exc:
                raise self.decode_error(consumed - pending + exc.start) from None
            consumed += len(data)
            if text:
                yield text
            data = self.stream.read(self.chunk_bytes)
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self.decode_error(consumed - len(decoder.getstate()[0]), True) from None
        if tail:
            yield tail


def open_raw(source: PathLike, encoding: str | None = None,
             chunk_bytes: int | None = None) -> RawText:
    """Open a path or ``-`` as a :class:`RawText` (a file's first chunk is read now, stdin's when
    it is first asked for)."""
    return RawText(source, encoding, chunk_bytes or CHUNK_BYTES)


def iter_lines(
    source: PathLike, encoding: str | None = None, max_chars: int | None = None
) -> Iterator[str]:
    """Yield the lines of a path or ``-`` without their line endings (``\\n`` or ``\\r\\n``).

    Only ``\\n`` ends a line (as ``wc -l`` counts), so one output line per input line holds. With
    ``max_chars``, a line longer than that is yielded in pieces of about ``max_chars`` characters,
    so memory stays bounded whatever the input; without it, lines are whole. A file that is
    missing, binary or undecodable in its first chunk raises here, at the call.
    """
    return _split_lines(iter_text_chunks(source, encoding), max_chars)


def _split_lines(chunks: Iterator[str], max_chars: int | None) -> Iterator[str]:
    pieces: list[str] = []  # the current line so far
    held = 0
    for chunk in chunks:
        parts = chunk.split("\n")
        for part in parts[:-1]:
            pieces.append(part)
            line = "".join(pieces)
            pieces, held = [], 0
            yield line.removesuffix("\r")
        if parts[-1]:
            pieces.append(parts[-1])
            held += len(parts[-1])
            if max_chars is not None and held > max_chars:
                yield "".join(pieces)
                pieces, held = [], 0
    if pieces:
        line = "".join(pieces)
        yield line.removesuffix("\r")


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
    A missing or binary file, or one in an unknown encoding, raises here, at the call.
    """
    if encoding is not None and "\n".encode(_codec(encoding).name) != b"\n":
        return _wide_numbered_lines(iter_lines(source, encoding), encoding)
    return _started(_numbered_lines(source, encoding, max_bytes), source)


def _wide_numbered_lines(lines: Iterator[str], encoding: str) -> Iterator[tuple[int, int, str, str | None]]:
    encoder = codecs.getincrementalencoder(encoding)()
    end = 0
    for number, line in enumerate(lines, 1):
        end += len(encoder.encode(line + "\n"))
        yield number, end, line, None


def _numbered_lines(
    source: PathLike, encoding: str | None, max_bytes: int | None
) -> Iterator[tuple[int, int, str, str | None]]:
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


