"""Several steps over a corpus in one streaming pass (``zhtext pipe``)."""

from zhtext.pipeline.core import Doc, Pipeline

__all__ = ["Doc", "Pipeline"]
