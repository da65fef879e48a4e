"""Label schemes (BIO, BIOES, BMES): which tag may follow which, and tags <-> spans.

The scheme says which moves are legal; the CRF (``zhtext.neural.crf``) and the Numba Viterbi pin
the illegal ones at :data:`~zhtext.labels.viterbi.FORBIDDEN`. The span helpers turn tag strings
into ``(start, end_exclusive, label)`` spans and back; they accept ill-formed sequences (an ``I-X``
with no ``B-X``, a type change mid-entity) the way scorers do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from zhtext.errors import ZhtextError

# The role of a tag's prefix: outside, begin, inside (I or M), end, single.
_OUT, _BEGIN, _INSIDE, _END, _SINGLE = "O", "B", "I", "E", "S"


SCHEMES = ("BIO", "BIOES", "BMES")

# The roles as numbers, for the Numba span reader (zhtext.labels.spans, which loads Numba: this
# module must not).
ROLE_CODES = {_OUT: 0, _BEGIN: 1, _INSIDE: 2, _END: 3, _SINGLE: 4}


_PREFIXES = {
    "BIO": {"O": _OUT, "B": _BEGIN, "I": _INSIDE},
    "BIOES": {"O": _OUT, "B": _BEGIN, "I": _INSIDE, "E": _END, "S": _SINGLE},
    "BMES": {"O": _OUT, "B": _BEGIN, "M": _INSIDE, "E": _END, "S": _SINGLE},
}


_INSIDE_PREFIX = {"BIO": "I", "BIOES": "I", "BMES": "M"}


def check_scheme(scheme: str) -> str:
    name = str(scheme).upper()
    if name not in SCHEMES:
        raise ZhtextError(f"unknown label scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    return name


def _parse(label: str, scheme: str) -> tuple[str, str]:
    """``"B-PER"`` -> (role, "PER"); ``"O"`` or a bare ``"B"`` (segmentation) has type ``""``."""
    prefix, _, kind = label.partition("-")
    role = _PREFIXES[scheme].get(prefix)
    if role is None or (role == _OUT and kind):
        raise ZhtextError(f"label {label!r} is not a {scheme} label (expected e.g. {_example(scheme)})")
    return role, kind


def _example(scheme: str) -> str:
    return {"BIO": "O, B-PER, I-PER", "BIOES": "O, B-PER, I-PER, E-PER, S-PER", "BMES": "B, M, E, S"}[scheme]


def allowed_transitions(
    labels: Sequence[str], scheme: str, allow_inside_start: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which moves a label scheme allows.

    Args:
        labels: tag names, index = tag id (``"O"``, ``"B-X"``, ``"I-X"``, ``"E-X"``, ``"S-X"``;
            ``"B"``, ``"M"``, ``"E"``, ``"S"`` for BMES segmentation, or ``"B-X"`` style).
        scheme: ``"BIO"``, ``"BIOES"`` or ``"BMES"``.
        allow_inside_start: let a sequence start and end inside an entity (windows of long texts).

    Returns:
        ``(allowed [K, K], start_ok [K], end_ok [K])`` boolean arrays; ``allowed[i, j]`` is the move
        from tag i to tag j.
    """
    scheme = check_scheme(scheme)
    parsed = [_parse(label, scheme) for label in labels]
    roles = np.array([role for role, _ in parsed])
    kinds = np.array([kind for _, kind in parsed])
    same_kind = kinds[:, None] == kinds[None, :]
    opened = np.isin(roles, (_BEGIN, _INSIDE))  # an entity is open after B and I/M
    if scheme == "BIO":
        # I-X must follow B-X or I-X; anything else may follow anything; any tag may end.
        continues = roles == _INSIDE
        allowed = ~continues[None, :] | (opened[:, None] & same_kind)
        end_ok = np.ones(len(labels), dtype=bool)
    else:
        # An open entity must go on (I/M) or close (E) in its own kind; a closed one may not.
        continues = np.isin(roles, (_INSIDE, _END))
        allowed = np.where(opened[:, None], continues[None, :] & same_kind, ~continues[None, :])
        end_ok = ~opened
    start_ok = ~continues
    if allow_inside_start:
        start_ok = np.ones(len(labels), dtype=bool)
        end_ok = np.ones(len(labels), dtype=bool)
    return allowed.astype(bool), start_ok.astype(bool), end_ok.astype(bool)


def tags_to_spans(tags: Sequence[str], scheme: str) -> list[tuple[int, int, str]]:
    """Entity spans ``(start, end_exclusive, label)`` of a tag sequence, in order.

    Ill-formed sequences are read leniently: an inside or end tag with no open entity of its kind
    starts a new one, a begin tag closes the open entity, and an entity still open at the end is
    closed there. BMES segmentation tags without a type give label ``""``.
    """
    scheme = check_scheme(scheme)
    distinct = list(dict.fromkeys(tags))
    roles, kinds, names = tag_codes(distinct, scheme)
    index = {tag: i for i, tag in enumerate(distinct)}
    path = np.fromiter((index[tag] for tag in tags), dtype=np.int64, count=len(tags))
    from zhtext.labels.spans import read_spans  # Numba: loaded when first needed, not with the CLI

    starts, ends, found = read_spans(path, roles, kinds)
    return [(a, b, names[k]) for a, b, k in zip(starts.tolist(), ends.tolist(), found.tolist())]


def tag_codes(tags: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each tag's role (:mod:`zhtext.labels.spans`' codes) and kind id, and the kinds by id: the
    tags as the Numba span reader takes them."""
    parsed = [_parse(tag, scheme) for tag in tags]
    ids: dict[str, int] = {}
    roles = np.array([ROLE_CODES[role] for role, _ in parsed], dtype=np.int64)
    kinds = np.array([ids.setdefault(kind, len(ids)) for _, kind in parsed], dtype=np.int64)
    return roles, kinds, list(ids)


def spans_to_tags(length: int, spans: Iterable[tuple[int, int, str]], scheme: str) -> list[str]:
    """Tags for a sequence of ``length`` tokens holding non-overlapping ``spans``; "O" elsewhere.

    Inverse of :func:`tags_to_spans`. A span label of ``""`` gives bare tags (``"B"``, ``"M"``...).
    """
    scheme = check_scheme(scheme)
    tags = ["O"] * length
    taken = [False] * length
    for begin, end, label in sorted(spans):
        if not 0 <= begin < end <= length:
            raise ZhtextError(f"span ({begin}, {end}, {label!r}) does not fit a sequence of {length}")
        if any(taken[begin:end]):
            raise ZhtextError(f"span ({begin}, {end}, {label!r}) overlaps another span")
        suffix = f"-{label}" if label else ""
        inside = _INSIDE_PREFIX[scheme] + suffix
        if scheme == "BIO":
            pieces = ["B" + suffix] + [inside] * (end - begin - 1)
        elif end - begin == 1:
            pieces = ["S" + suffix]
        else:
            pieces = ["B" + suffix] + [inside] * (end - begin - 2) + ["E" + suffix]
        tags[begin:end] = pieces
        taken[begin:end] = [True] * (end - begin)
    return tags


def spans(path: Sequence[int], labels: Sequence[str], scheme: str) -> list[tuple[int, int, str]]:
    """Spans of a decoded path of tag ids; the -1 padding past its length is dropped."""
    return tags_to_spans([labels[int(tag)] for tag in path if tag >= 0], scheme)
