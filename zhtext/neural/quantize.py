"""int8 inference on the CPU: torch's dynamic quantization of a model's linear layers.

Weights are stored as int8 with one scale per layer; activations are quantized on the fly, batch
by batch, so no calibration data is needed and every model class takes it the same way
(``Cls.load(..., quantize="int8")``, ``--quantize int8``). Only linear layers change: embeddings,
layer norms, the CRF and the Viterbi stay as they are. GPT-2 writes its projections as
transformers' ``Conv1D`` (a linear layer with its weight transposed); they are turned into
``nn.Linear`` first so that they are quantized too, which is where generation spends its time.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from zhtext.errors import ZhtextError

__all__ = ["QUANTIZE_MODES", "quantize_module"]

QUANTIZE_MODES = ("int8",)


def _check(mode: str, device: torch.device) -> None:
    if mode not in QUANTIZE_MODES:
        raise ZhtextError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, not {mode!r}")
    if device.type != "cpu":
        raise ZhtextError(f"int8 quantization runs on the CPU, not on {device.type}: "
                          "drop --quantize or use --device cpu")
    if not torch.backends.quantized.supported_engines or torch.backends.quantized.supported_engines == ["none"]:
        raise ZhtextError("this torch build has no quantized CPU kernels")


def _conv1d_to_linear(module: torch.nn.Module) -> None:
    """Replace transformers' Conv1D layers (GPT-2) by the equivalent nn.Linear, in place."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover  (transformers without it has no such layers)
        return
    for name, child in list(module.named_children()):
        if isinstance(child, Conv1D):
            linear = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(child.weight.t())
                linear.bias.copy_(child.bias)
            setattr(module, name, linear)
        else:
            _conv1d_to_linear(child)


def quantize_module(module: Any, mode: str | None, device: torch.device) -> Any:
    """``module`` with its linear layers quantized to ``mode`` (None: unchanged), in eval mode."""
    if mode is None:
        return module
    _check(mode, device)
    module.eval()
    _conv1d_to_linear(module)
    # Dynamic quantization lives on in torch.ao with deprecation notices pointing at torchao;
    # it is what runs on every CPU build today, so its notices are not the user's business.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
