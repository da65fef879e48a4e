"""`Lexicon`: words with counts, read from and written to TSV or jieba's dictionary format."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_lines
from zhtext.io.writing import atomic_output

FORMATS = ("tsv", "jieba")


def jieba_dir() -> Path:
    """The installed jieba package's folder, found without importing jieba (~40 ms, most of it
    spent loading its HMM tables)."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise ZhtextError("jieba is not installed: its dictionary and tables are needed here")
    return Path(next(iter(spec.submodule_search_locations)))


def jieba_dict_path() -> Path:
    """Path of the ``dict.txt`` that ships inside the installed jieba package."""
    return jieba_dir() / "dict.txt"


class Lexicon(Mapping[str, int]):
    """A word list with counts (frequencies): the input of segmentation, the output of discovery.

    ``total`` is the sum of all counts unless given; jieba's loader adds a duplicated word's counts
    to the total while keeping only the last, and a lexicon read from a jieba file does the same so
    that probabilities match jieba's to the last bit.
    """

    def __init__(
        self,
        counts: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
        total: int | None = None,
        tags: Mapping[str, str] | None = None,
        bits_per_char: list[float] | None = None,
    ) -> None:
        self.counts: dict[str, int] = dict(counts or {})
        self._total = total
        self.tags: dict[str, str] = dict(tags or {})
        # Filled by discovery: bits per character of the corpus after each re-estimation pass.
        self.bits_per_char: list[float] = list(bits_per_char or [])

    # Mapping protocol
    def __getitem__(self, word: str) -> int:
        return self.counts[word]

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    def __repr__(self) -> str:
        return f"Lexicon({len(self)} words, total={self.total})"

    @property
    def total(self) -> int:
        """The count that probabilities are divided by: p(w) = count(w) / total."""
        return self._total if self._total is not None else sum(self.counts.values())

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        """Words by falling count (ties by word), the first ``n`` or all."""
        items = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return items if n is None else items[:n]

    # Reading
    @classmethod
    def load(cls, path: str | os.PathLike, fmt: str = "auto", encoding: str | None = None) -> Lexicon:
        """Read ``word<TAB>count`` (TSV) or jieba's ``word count [tag]`` lines.

        ``fmt="auto"`` takes TSV when the first entry holds a tab. A missing count means 1 in TSV;
        a malformed line raises ZhtextError naming its number.
        """
        if fmt not in ("auto", *FORMATS):
            raise ZhtextError(f"unknown lexicon format {fmt!r}; use tsv or jieba")
        counts: dict[str, int] = {}
        tags: dict[str, str] = {}
        total = 0
        for lineno, raw in enumerate(iter_lines(path, encoding), 1):
            line = raw.strip().lstrip("\ufeff")
            if not line or line.startswith("#"):
                continue
            if fmt == "auto":
                fmt = "tsv" if "\t" in line else "jieba"
            fields = line.split("\t") if fmt == "tsv" else line.split()
            word = fields[0].strip()
            try:
                count = int(fields[1]) if len(fields) > 1 and fields[1] else 1
            except ValueError:
                raise ZhtextError(
                    f"{path}:{lineno}: count {fields[1]!r} is not a whole number"
                ) from None
            if count < 0:
                raise ZhtextError(f"{path}:{lineno}: negative count {count}")
            counts[word] = count
            total += count
            if len(fields) > 2 and fields[2]:
                tags[word] = fields[2]
        return cls(counts, total=total, tags=tags)

    @classmethod
    def jieba_default(cls) -> Lexicon:
        """jieba's own dictionary, as installed with jieba."""
        return cls.load(jieba_dict_path(), fmt="jieba")

    # Writing
    def lines(self, fmt: str = "tsv", top: int | None = None) -> Iterator[str]:
        """The lexicon as text lines, most frequent first."""
        if fmt not in FORMATS:
            raise ZhtextError(f"unknown lexicon format {fmt!r}; use tsv or jieba")
        sep = "\t" if fmt == "tsv" else " "
        for word, count in self.most_common(top):
            tag = self.tags.get(word)
            yield f"{word}{sep}{count}{sep}{tag}" if tag and fmt == "jieba" else f"{word}{sep}{count}"

    def save(self, path: str | os.PathLike | None, fmt: str = "tsv", top: int | None = None) -> None:
        """Write the lexicon atomically (``None`` or ``-``: stdout)."""
        with atomic_output(path) as out:
            for line in self.lines(fmt, top):
                out.write(line + "\n")
