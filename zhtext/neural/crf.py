"""Linear-chain CRF layer (torch) with label-scheme constraints, decoded by the Numba Viterbi.

A CRF over K tags scores a tag path y for emissions E (from an encoder) as
``start[y0] + sum_t E[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_last]``. Training maximises
``log p(y|x) = score(y) - log Z`` with the forward algorithm in log space, batched and masked by
length. The label scheme (BIO, BIOES, BMES) says which moves are legal; illegal ones are pinned at
:data:`~zhtext.labels.viterbi.FORBIDDEN` by a fixed mask applied in every computation, so no optimiser step
can make them legal. A window cut from a long text may start or end inside an entity:
``allow_inside_start`` (at construction, with :meth:`CRF.set_window_mode`, or per :meth:`CRF.decode`
call) lifts the start and end constraints for that case.

The span helpers turn tag strings into ``(start, end_exclusive, label)`` spans and back; they accept
ill-formed sequences (an ``I-X`` with no ``B-X``, a type change mid-entity) the way scorers do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from zhtext.errors import ZhtextError
from zhtext.labels.marginals import forward_backward
from zhtext.labels.schemes import allowed_transitions, check_scheme, spans
from zhtext.labels.viterbi import FORBIDDEN, viterbi_decode, viterbi_topk

__all__ = ["CRF"]


class _LogPartition(torch.autograd.Function):
    """log Z of a batch with its gradient, from forward-backward variables computed beforehand:
    d log Z / d emissions[t, k] is the posterior marginal of tag k at t, d / d transitions[i, j]
    the expected count of the move i -> j, d / d start and end the marginals at the first and
    last token."""

    @staticmethod
    def forward(ctx, emissions, trans, start, end, fb):  # type: ignore[override]
        ctx.fb = fb
        ctx.dtype = emissions.dtype
        return torch.from_numpy(fb[3]).to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # In torch, float64: numpy's matrix products would wake OpenBLAS's threads, which then
        # spin against torch's (measured: the encoder's next matmul ran 2x slower).
        em, alpha, beta, log_z, post, lengths, trans = (torch.from_numpy(x) for x in ctx.fb)
        g = grad.detach().double()
        grad_em = post * g[:, None, None]
        rows = torch.nonzero(lengths > 0).squeeze(1)
        grad_start = g[rows] @ post[rows, 0]
        grad_end = g[rows] @ post[rows, lengths[rows] - 1]
        # Expected moves: for each token t >= 1, A[i] * exp(trans[i, j]) * C[j] with
        # A = exp(alpha[t-1]), C = exp(em[t] + beta[t]), each scaled by its maximum and the
        # product normalised by its own sum, which is 1 in exact arithmetic: no exp per (i, j),
        # no overflow, and one matrix product over all tokens.
        b, t = torch.nonzero(torch.arange(1, em.shape[1])[None, :] < lengths[:, None], as_tuple=True)
        exp_trans = torch.exp(trans - trans.max())
        a = alpha[b, t]
        c = em[b, t + 1] + beta[b, t + 1]
        a = torch.exp(a - a.amax(1, keepdim=True))
        c = torch.exp(c - c.amax(1, keepdim=True))
        total = ((a @ exp_trans) * c).sum(1)
        grad_trans = exp_trans * ((a * (g[b] / total)[:, None]).T @ c)
        out = [x.to(ctx.dtype) for x in (grad_em, grad_trans, grad_start, grad_end)]
        return (*out, None)


def _log_partition_cpu(emissions: Tensor, lengths: Tensor, trans: Tensor, start: Tensor,
                       end: Tensor) -> Tensor | None:
    """log Z by the Numba forward-backward in float64 (one scaled pass each way), differentiable
    through :class:`_LogPartition`; autograd through the log-space recursion keeps a [B, K, K]
    tensor per token and took a third of a small tagger's training step. None where float64's
    range did not hold the scaled recursion (each token's marginals must sum to 1): the caller
    then takes the log-space recursion."""
    em = emissions.detach().double().numpy()
    n = lengths.cpu().numpy().astype(np.int64)
    tr = trans.detach().double().numpy()
    try:
        alpha, beta, log_z = forward_backward(em, n, tr, start.detach().double().numpy(),
                                              end.detach().double().numpy())
    except ZeroDivisionError:  # every state of a token underflowed
        return None
    valid = np.arange(em.shape[1])[None, :] < n[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        post = np.where(valid[:, :, None], np.exp(alpha + beta - log_z[:, None, None]), 0.0)
    if not (np.isfinite(log_z).all() and np.allclose(post.sum(2)[valid], 1.0, rtol=0, atol=1e-6)):
        return None
    return _LogPartition.apply(emissions, trans, start, end,
                               (em, alpha, beta, log_z, post, n, tr))


class CRF(nn.Module):
    """A linear-chain CRF over ``num_tags`` tags, optionally constrained by a label scheme.

    Parameters ``transitions`` [K, K] (from i to j), ``start`` [K] and ``end`` [K]. With ``labels``
    and ``scheme`` given, illegal moves are fixed at -1e4 in training and never taken in decoding;
    without them the CRF is unconstrained.

    Example:
        >>> crf = CRF(5, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "BIO")
        >>> loss = crf(emissions, tags, mask)          # training
        >>> paths, scores = crf.decode(emissions, mask)  # numpy [B, L] (-1 padded), [B]
    """

    def __init__(
        self,
        num_tags: int,
        labels: Sequence[str] | None = None,
        scheme: str | None = None,
        allow_inside_start: bool = False,
    ) -> None:
        super().__init__()
        if num_tags < 1:
            raise ZhtextError(f"a CRF needs at least one tag, got {num_tags}")
        if labels is not None and len(labels) != num_tags:
            raise ZhtextError(f"{len(labels)} labels given for a CRF of {num_tags} tags")
        if scheme is not None and labels is None:
            raise ZhtextError(f"scheme {scheme!r} needs the label names to know which moves are legal")
        self.num_tags = num_tags
        self.labels = list(labels) if labels is not None else None
        self.scheme = check_scheme(scheme) if scheme is not None else None
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        # Masks follow from labels and scheme, so they stay out of the state dict.
        allowed, start_ok, end_ok = self._masks(allow_inside_start)
        self.register_buffer("allowed", torch.from_numpy(allowed), persistent=False)
        self.register_buffer("start_ok", torch.from_numpy(start_ok), persistent=False)
        self.register_buffer("end_ok", torch.from_numpy(end_ok), persistent=False)
        self.allow_inside_start = bool(allow_inside_start)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, scheme={self.scheme}, allow_inside_start={self.allow_inside_start}"

    def _masks(self, allow_inside_start: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.scheme is None:
            everything = np.ones(self.num_tags, dtype=bool)
            return np.ones((self.num_tags, self.num_tags), dtype=bool), everything, everything.copy()
        return allowed_transitions(self.labels, self.scheme, allow_inside_start)

    def set_window_mode(self, allow_inside_start: bool) -> None:
        """Let sequences start and end inside an entity (True), or not (False), from now on."""
        _, start_ok, end_ok = self._masks(allow_inside_start)
        self.start_ok.copy_(torch.from_numpy(start_ok))
        self.end_ok.copy_(torch.from_numpy(end_ok))
        self.allow_inside_start = bool(allow_inside_start)

    def constrained(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(transitions, start, end)`` with every illegal move pinned at -1e4 (differentiable)."""
        return (
            self.transitions.masked_fill(~self.allowed, FORBIDDEN),
            self.start.masked_fill(~self.start_ok, FORBIDDEN),
            self.end.masked_fill(~self.end_ok, FORBIDDEN),
        )

    def _check(self, emissions: Tensor, mask: Tensor | None) -> Tensor:
        """Validate shapes and return the mask as bool (all True when None)."""
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"emissions must be [B, L, {self.num_tags}], got {tuple(emissions.shape)}")
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask must be {tuple(emissions.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.bool()
        positions = torch.arange(mask.shape[1], device=mask.device)
        if not torch.equal(mask, positions < mask.sum(1, keepdim=True)):
            raise ValueError("mask must be a left-aligned prefix (True then False) in every row")
        return mask

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log p(tags | emissions)`` per sequence, ``[B]``; an empty sequence scores 0.

        ``tags`` beyond each length are ignored (any value, e.g. -100).
        """
        mask = self._check(emissions, mask)
        if tags.shape != mask.shape:
            raise ValueError(f"tags must be {tuple(mask.shape)}, got {tuple(tags.shape)}")
        return self._path_score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """Training loss: the negative log-likelihood averaged over the batch."""
        return -self.log_likelihood(emissions, tags, mask).mean()

    def _path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        trans, start, end = self.constrained()
        n_batch, max_len, _ = emissions.shape
        if max_len == 0:
            return emissions.new_zeros(n_batch)
        tags = torch.where(mask, tags.long(), 0)
        lengths = mask.sum(1)
        zero = emissions.new_zeros(())
        score = torch.where(mask, emissions.gather(2, tags.unsqueeze(2)).squeeze(2), zero).sum(1)
        score = score + torch.where(mask[:, 1:], trans[tags[:, :-1], tags[:, 1:]], zero).sum(1)
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return score + torch.where(lengths > 0, start[tags[:, 0]] + end[last], zero)

    def _forward_scores(self, emissions: Tensor, mask: Tensor) -> tuple[list[Tensor], Tensor]:
        """Forward variables ``alpha_t`` [B, K] for every t (carried past each length) and log Z."""
        trans, start, end = self.constrained()
        alpha = start + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
            alphas.append(alpha)
        log_z = torch.logsumexp(alpha + end, dim=1)
        return alphas, torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        if emissions.shape[1] == 0:
            return emissions.new_zeros(emissions.shape[0])
        if emissions.device.type == "cpu":
            log_z = _log_partition_cpu(emissions, mask.sum(1), *self.constrained())
            if log_z is not None:
                return log_z
        return self._forward_scores(emissions, mask)[1]

    def marginals(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """Posterior probability of every tag at every token, ``[B, L, K]`` (0 past each length).

        Forward-backward in log space; each valid row sums to 1. Useful as a confidence score.
        """
        mask = self._check(emissions, mask)
        if emissions.shape[1] == 0:
            return emissions.new_zeros(emissions.shape)
        trans, _, end = self.constrained()
        alphas, log_z = self._forward_scores(emissions, mask)
        beta = end.expand(emissions.shape[0], -1)
        betas = [beta]
        for t in range(emissions.shape[1] - 2, -1, -1):
            step = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t + 1 : t + 2], step, end.expand_as(step))
            betas.append(beta)
        log_post = torch.stack(alphas, 1) + torch.stack(betas[::-1], 1) - log_z[:, None, None]
        return torch.where(mask.unsqueeze(2), log_post.exp(), torch.zeros_like(log_post))

    @torch.no_grad()
    def decode(
        self,
        emissions: Tensor,
        mask: Tensor | None = None,
        top_k: int = 1,
        allow_inside_start: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best path(s) under the constraints, by the Numba Viterbi kernels.

        Args:
            emissions: ``[B, L, K]`` scores (any device; decoded on the CPU in float32).
            mask: ``[B, L]`` left-aligned prefix mask; None = every token valid.
            top_k: 1 for the best path; more for the k best distinct paths.
            allow_inside_start: override the window mode for this call (None = the CRF's own).

        Returns:
            ``top_k=1``: paths ``int32 [B, L]`` (-1 past each length) and scores ``float32 [B]``;
            ``top_k>1``: ``[B, k, L]`` and ``[B, k]``, best first, missing paths -1 / -inf.
        """
        mask = self._check(emissions, mask)
        transitions, start, end = (p.detach().cpu().numpy() for p in self.constrained())
        if allow_inside_start is not None and bool(allow_inside_start) != self.allow_inside_start:
            raw = self.start.detach().cpu().numpy(), self.end.detach().cpu().numpy()
            _, start_ok, end_ok = self._masks(bool(allow_inside_start))
            start = np.where(start_ok, raw[0], FORBIDDEN)
            end = np.where(end_ok, raw[1], FORBIDDEN)
        em = emissions.detach().to("cpu", torch.float32).numpy()
        if not np.isfinite(em).all():  # no path has a score: the model that gave them is broken
            raise FloatingPointError("the emission scores are not finite")
        lengths = mask.sum(1).cpu().numpy()
        if top_k == 1:
            return viterbi_decode(em, lengths, transitions, start, end)
        return viterbi_topk(em, lengths, transitions, start, end, top_k)

    def spans(self, path: Sequence[int]) -> list[tuple[int, int, str]]:
        """Spans of one decoded path, with this CRF's labels and scheme."""
        if self.labels is None or self.scheme is None:
            raise ZhtextError("this CRF has no labels and scheme to read spans with")
        return spans(path, self.labels, self.scheme)


