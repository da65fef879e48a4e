"""Spans of tag paths in Numba: the one reader of tags as spans, for a single sequence of tags
(:func:`~zhtext.labels.schemes.tags_to_spans`) and for every path a tagger decodes (with their
probabilities, :func:`~zhtext.labels.marginals.score_paths`).

A tag is given as its *role* (:data:`OUT`, :data:`BEGIN`, :data:`INSIDE` for I or M, :data:`END`,
:data:`SINGLE`: the numbers of :data:`~zhtext.labels.schemes.ROLE_CODES`) and the id of its *kind*
(the entity type; one id for BMES's untyped tags).

Ill-formed sequences are read leniently: an inside or end tag with no open entity of its kind
starts a new one, a begin tag closes the open entity, and an entity still open at the end is
closed there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from zhtext.labels.schemes import ROLE_CODES

OUT, BEGIN, INSIDE, END, SINGLE = (ROLE_CODES[role] for role in "OBIES")


@njit(cache=True, nogil=True, inline="always")
def read_spans_into(path, n, roles, kinds, starts, ends, span_kinds, at):
    """The spans of tags ``path[:n]`` (tag ids into ``roles`` and ``kinds``) written from row ``at``
    of ``starts``, ``ends`` and ``span_kinds``; returns the row after the last."""
    open_at = -1
    open_kind = -1
    for i in range(n):
        role = roles[path[i]]
        kind = kinds[path[i]]
        if not (open_at >= 0 and kind == open_kind and (role == INSIDE or role == END)):
            if open_at >= 0:
                starts[at], ends[at], span_kinds[at] = open_at, i, open_kind
                at += 1
                open_at = -1
            if role != OUT:
                open_at, open_kind = i, kind
        if (role == END or role == SINGLE) and open_at >= 0:
            starts[at], ends[at], span_kinds[at] = open_at, i + 1, open_kind
            at += 1
            open_at = -1
    if open_at >= 0:
        starts[at], ends[at], span_kinds[at] = open_at, n, open_kind
        at += 1
    return at


@njit(cache=True, nogil=True)
def read_spans(path, roles, kinds):
    """``(starts, ends, kinds)`` of the spans of the tag ids ``path``."""
    n = path.shape[0]
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    span_kinds = np.empty(n, dtype=np.int64)
    count = read_spans_into(path, n, roles, kinds, starts, ends, span_kinds, 0)
    return starts[:count], ends[:count], span_kinds[:count]
