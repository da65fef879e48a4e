"""The io layer: reading text (one codec policy), writing outputs atomically, progress, config files.

No torch, no numba: everything above reads and writes through here.
"""

from zhtext.io.reading import iter_lines, iter_numbered_lines, iter_text_chunks
from zhtext.io.writing import atomic_output, atomic_path

__all__ = ["atomic_output", "atomic_path", "iter_lines", "iter_numbered_lines", "iter_text_chunks"]
