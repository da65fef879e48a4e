"""A bidirectional LSTM over padded rows, blind to the padding and exportable to ONNX.

torch's own way to keep a backward LSTM from reading the padding, ``pack_padded_sequence``, does
not go through the ONNX exporter. Here the backward direction reads each row reversed within its
own length (an index gather, which exports), so padding comes after the real positions in both
directions, and every real position's output is the one that row gives alone.
"""

from __future__ import annotations

import torch
from torch import nn


def reverse_within(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, width]`` indices that reverse the first ``lengths[b]`` positions of each row and keep
    the rest in place; applying them twice gives the identity."""
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    lengths = lengths.unsqueeze(1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


class BiLSTM(nn.Module):
    """One bidirectional LSTM layer: ``[B, L, size]`` in, ``[B, L, 2 x hidden]`` out (forward
    then backward states), for rows whose first ``mask.sum(1)`` positions are real."""

    def __init__(self, size: int, hidden: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(size, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(size, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ahead, _ = self.forward_lstm(x)  # padding is after the real positions: never read
        index = reverse_within(mask.sum(1), x.shape[1]).unsqueeze(-1)
        back, _ = self.backward_lstm(x.gather(1, index.expand(-1, -1, x.shape[2])))
        back = back.gather(1, index.expand(-1, -1, back.shape[2]))
        return torch.cat([ahead, back], dim=-1)
