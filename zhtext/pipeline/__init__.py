"""Several steps over a corpus in one streaming pass (``zhtext pipe``): an open set of steps.

- :mod:`~zhtext.pipeline.step`: :class:`Step` and :func:`register`, the registry of steps by name;
- :mod:`~zhtext.pipeline.settings`: a step's settings, declared once as a dataclass;
- :mod:`~zhtext.pipeline.steps`: the built-in steps (segment, tag, title, generate, embed);
- :mod:`~zhtext.pipeline.doc`: :class:`Doc`, a document and its results by step name;
- :mod:`~zhtext.pipeline.resolve`: a pipeline's settings from keywords, a TOML config or ``--set``;
- :mod:`~zhtext.pipeline.run`: :class:`Pipeline`, the batch loop and the run over a file;
- :mod:`~zhtext.pipeline.lines`, :mod:`~zhtext.pipeline.vectors`: the input lines, the ``.npy`` out.
"""

from zhtext.pipeline import steps as _builtin_steps  # noqa: F401  (registers the built-in steps)
from zhtext.pipeline.doc import Doc, Problem
from zhtext.pipeline.lines import Lines, read_numbered
from zhtext.pipeline.resolve import describe_steps, parse_assignments
from zhtext.pipeline.run import Pipeline, Report
from zhtext.pipeline.settings import setting
from zhtext.pipeline.step import STEPS, Step, register

__all__ = ["STEPS", "Doc", "Lines", "Pipeline", "Problem", "Report", "Step", "describe_steps",
           "parse_assignments", "read_numbered", "register", "setting"]  # fmt: skip
