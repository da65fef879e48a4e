"""The lexical layer's fixed choices and limits, in a module free of Numba: the command line
declares its options with them (choices, ranges, defaults) without loading the kernels, so that
``zhtext --help`` and every command's start stay quick."""

from __future__ import annotations

MAX_N = 4  # the longest n-gram counted: 16 bits an id, 64 bits a key
MODES = ("default", "search", "all")  # jieba's cut, cut_for_search and cut(cut_all=True)
MAX_TERMS = 2_000_000  # build_idf: distinct words held at most (~200 MB of Python strings)
