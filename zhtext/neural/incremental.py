"""One-token steps of BERT (UniLM) and GPT-2 over a split key/value cache.

The prefill (a whole content or prompt) runs through transformers' own forward; the steps that
follow feed one new token per sequence and run here, on the same weights, for two reasons:

- A step multiplies a handful of rows by every weight matrix, so it is bound by reading the
  weights. MKL's kernels for few rows are up to three times slower in the ``x @ W.T`` layout of
  ``nn.Linear`` (and ``x @ W`` of GPT-2's ``Conv1D``) than in ``W @ x.T`` (:func:`skinny_linear`).
- transformers' cache grows by concatenation and beam search re-copies all of it every step,
  the content included, though every beam of an article shares that content.

So the cache is split (:class:`SplitCache`): the prefix keys and values stay as the prefill left
them, one copy per input, and only the generated tokens' keys and values live per sequence, in a
buffer that grows by doubling. Sequences find their input through ``owner``; while the sequences
of each input form equal consecutive groups (beams, samples) the prefix attention is one batched
product over the shared prefix and nothing is copied.

The results equal transformers' forward up to float rounding (the tests check the logits
against full recomputation and decoded outputs token for token).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zhtext.errors import ZhtextError

__all__ = ["SplitCache", "StepState", "bert_hidden_step", "check_bert", "gpt2_step", "mlm_head",
           "prepare_gpt2", "project", "skinny_linear"]

# Up to this many rows W @ x.T beats x @ W.T with MKL on AVX-512 (torch's x86 builds); beyond it
# the two layouts meet. benchmarks/title_decode.py and generate_vs_hf.py show the effect.
SKINNY_ROWS = 64


def skinny_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` for a few rows x (M, in), weight (out, in) contiguous."""
    rows = x.shape[0]
    if rows > SKINNY_ROWS or not weight.is_contiguous():
        return nn.functional.linear(x, weight, bias)
    if rows == 1:
        x = torch.cat([x, x])  # one row would take the matrix-vector path, slower still
    else:
        x = x.contiguous()
    if bias is None:
        out = torch.mm(weight, x.t())
    else:
        out = torch.addmm(bias[:, None], weight, x.t())
    return out.t()[:rows]


def project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A linear layer applied to a few rows: ``nn.Linear`` through :func:`skinny_linear`, GPT-2's
    ``Conv1D`` (weight stored (in, out)) through its transpose, and anything else, such as an int8
    layer (:mod:`zhtext.neural.quantize`), called as it is."""
    if isinstance(layer, nn.Linear):
        return skinny_linear(x, layer.weight, layer.bias)
    if type(layer).__name__ == "Conv1D":
        return skinny_linear(x, layer.weight.t(), layer.bias)
    return layer(x)


def _groups(owner: list[int]) -> tuple[list[int], int] | None:
    """``(inputs, g)`` when owner lists each of distinct inputs g times in a row, else None."""
    if not owner:
        return [], 1
    starts = [i for i in range(len(owner)) if i == 0 or owner[i] != owner[i - 1]]
    g = len(owner) // len(starts)
    if g * len(starts) != len(owner) or any(s != j * g for j, s in enumerate(starts)):
        return None
    inputs = [owner[s] for s in starts]
    return (inputs, g) if len(set(inputs)) == len(inputs) else None


class SplitCache:
    """Keys and values of every layer: a shared prefix per input plus one suffix per sequence.

    ``prefix_keys[l]`` and ``prefix_values[l]`` are (N, heads, L, head_dim) and ``prefix_valid``
    (N, L) says which prefix positions are real (not padding). Sequences start as one per input.
    """

    def __init__(self, prefix_keys: list[torch.Tensor], prefix_values: list[torch.Tensor],
                 prefix_valid: torch.Tensor):
        self.pk, self.pv = list(prefix_keys), list(prefix_values)
        self.valid = prefix_valid.bool()
        self.masked = not bool(self.valid.all())
        n = prefix_valid.shape[0]
        self.owner = torch.arange(n, device=prefix_valid.device)
        self.group = 1
        self.sk: list[torch.Tensor] = []
        self.sv: list[torch.Tensor] = []
        self.length = 0  # generated tokens held per sequence

    @classmethod
    def from_hf(cls, cache: Any, prefix_valid: torch.Tensor) -> SplitCache:
        """The prefix taken from a transformers ``DynamicCache`` after a prefill."""
        layers = cache.layers
        return cls([layer.keys for layer in layers], [layer.values for layer in layers],
                   prefix_valid)

    def _append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        rows, heads, dim = k.shape
        if len(self.sk) <= layer:
            shape = (rows, heads, 16, dim)
            self.sk.append(k.new_empty(shape))
            self.sv.append(v.new_empty(shape))
        if self.length == self.sk[layer].shape[2]:  # full: double
            grow = self.sk[layer].new_empty(self.sk[layer].shape)
            self.sk[layer] = torch.cat([self.sk[layer], grow], dim=2)
            self.sv[layer] = torch.cat([self.sv[layer], torch.empty_like(grow)], dim=2)
        self.sk[layer][:, :, self.length] = k
        self.sv[layer][:, :, self.length] = v

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               scale: float) -> torch.Tensor:
        """Store the new token's k, v (M, heads, dim) and return its attention output (M, heads * dim):
        every valid prefix position of its input, the tokens generated before it, and itself."""
        self._append(layer, k, v)
        rows, heads, dim = q.shape
        t = self.length + 1
        pk, pv = self.pk[layer], self.pv[layer]
        inputs, width, g = pk.shape[0], pk.shape[2], self.group
        # The prefix: the g sequences of an input share one product with its keys.
        q_grouped = q.reshape(inputs, g, heads, dim).transpose(1, 2)           # (N, H, g, d)
        pre = torch.matmul(q_grouped, pk.transpose(-1, -2)) * scale              # (N, H, g, L)
        if self.masked:
            pre = pre.masked_fill(~self.valid[:, None, None, :], float("-inf"))
        pre = pre.transpose(1, 2).reshape(rows, heads, width)
        suf = torch.matmul(q[:, :, None], self.sk[layer][:, :, :t].transpose(-1, -2))[:, :, 0]
        probs = torch.softmax(torch.cat([pre, suf * scale], dim=-1), dim=-1)
        p_pre = probs[..., :width].reshape(inputs, g, heads, width).transpose(1, 2)
        out = torch.matmul(p_pre, pv).transpose(1, 2).reshape(rows, heads, dim)
        out = out + torch.matmul(probs[..., None, width:], self.sv[layer][:, :, :t])[:, :, 0]
        return out.reshape(rows, heads * dim)

    def advance(self) -> None:
        """The step's token is stored in every layer."""
        self.length += 1

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the sequences ``index`` (M',), in that order; rows may repeat or vanish."""
        owner = self.owner[index]
        self.sk = [s.index_select(0, index) for s in self.sk]
        self.sv = [s.index_select(0, index) for s in self.sv]
        layout = _groups(owner.tolist())
        if layout is None:  # uneven: each sequence gets its own copy of its prefix
            pick, self.group = owner, 1
            self.owner = torch.arange(len(owner), device=owner.device)
        else:
            inputs, self.group = layout
            self.owner = torch.arange(len(inputs), device=owner.device).repeat_interleave(self.group)
            if inputs == list(range(self.valid.shape[0])):
                return  # the same inputs in the same order: the prefix stays as it is
            pick = torch.tensor(inputs, dtype=torch.long, device=owner.device)
        self.pk = [p.index_select(0, pick) for p in self.pk]
        self.pv = [p.index_select(0, pick) for p in self.pv]
        self.valid = self.valid.index_select(0, pick)
        self.masked = not bool(self.valid.all())



@functools.lru_cache(maxsize=None)
def _cache_keyword(stack: type) -> str:
    # transformers renamed past_key_values to cache (5.2x, the old name warns until 5.40).
    return "cache" if "cache" in inspect.signature(stack.forward).parameters else "past_key_values"


def prefill(stack: nn.Module, config: Any, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """Run a Hugging Face stack (``bert``, ``transformer``) once over whole inputs, keeping every
    layer's keys and values: its last hidden states and the filled ``DynamicCache``, which
    :meth:`SplitCache.from_hf` takes over."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    out = stack(**inputs, **{_cache_keyword(type(stack)): cache}, use_cache=True)
    return out.last_hidden_state, cache

@dataclass
class StepState:
    """What decoding carries between steps: the cache, each sequence's next position id and
    optionally ``bias``, logits (M, V) a step function adds to each of its sequence's outputs
    (a title's prior over its article's tokens), and ``source``, more tensors with a row per
    sequence (a title's copy keys over its article); all computed once and reordered with the
    sequences. Single use: the cache changes in place, so only the state returned last is valid."""

    cache: SplitCache
    next_pos: torch.Tensor  # (M,) long
    bias: torch.Tensor | None = None  # (M, V) float
    source: tuple[torch.Tensor, ...] = ()  # each (M, ...)

    def advanced(self) -> StepState:
        """The state after a step (the cache already holds the step's token)."""
        return StepState(self.cache, self.next_pos + 1, self.bias, self.source)

    def reordered(self, index: torch.Tensor) -> StepState:
        """The sequences ``index`` (M',), in that order."""
        self.cache.reorder(index)
        bias = None if self.bias is None else self.bias.index_select(0, index)
        source = tuple(t.index_select(0, index) for t in self.source)
        return StepState(self.cache, self.next_pos[index], bias, source)


@torch.no_grad()
def mlm_head(lm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The masked-LM head's logits (M, V) of last hidden states (M, H), as ``lm.cls`` gives them."""
    head = lm.cls.predictions
    tr = head.transform
    h = tr.LayerNorm(tr.transform_act_fn(project(tr.dense, hidden)))
    return project(head.decoder, h)


@torch.no_grad()
def bert_hidden_step(lm: nn.Module, tokens: torch.Tensor, positions: torch.Tensor,
                     types: torch.Tensor, cache: SplitCache) -> torch.Tensor:
    """The last hidden states (M, H) after feeding one token per sequence to a
    ``BertLMHeadModel`` / ``BertForMaskedLM`` (its logits: :func:`mlm_head`); the token sees its
    input's prefix and the tokens generated so far."""
    bert = lm.bert
    emb = bert.embeddings
    # transformers' order of additions, so the sums round the same way.
    x = emb.word_embeddings(tokens) + emb.token_type_embeddings(types)
    x = emb.LayerNorm(x + emb.position_embeddings(positions))
    rows = x.shape[0]
    for i, layer in enumerate(bert.encoder.layer):
        att = layer.attention.self
        heads, dim = att.num_attention_heads, att.attention_head_size
        q = project(att.query, x).reshape(rows, heads, dim)
        k = project(att.key, x).reshape(rows, heads, dim)
        v = project(att.value, x).reshape(rows, heads, dim)
        ctx = cache.attend(i, q, k, v, att.scaling)
        out = layer.attention.output
        x = out.LayerNorm(project(out.dense, ctx) + x)
        inner = layer.intermediate
        h = inner.intermediate_act_fn(project(inner.dense, x))
        out = layer.output
        x = out.LayerNorm(project(out.dense, h) + x)
    cache.advance()
    return x


def check_bert(lm: nn.Module) -> None:
    """Raise unless :func:`bert_hidden_step` reproduces this model's forward."""
    kind = getattr(lm.config, "position_embedding_type", "absolute")
    if kind != "absolute":
        raise ZhtextError(f"cached decoding supports absolute position embeddings, not {kind!r}")


def prepare_gpt2(lm: nn.Module) -> None:
    """Store each ``Conv1D`` weight (in, out) output-major in memory, so ``weight.t()`` is the
    contiguous (out, in) matrix :func:`skinny_linear` wants. Values and shapes do not change;
    saving writes them contiguous as before."""
    config = lm.config
    if getattr(config, "add_cross_attention", False):
        raise ZhtextError("cached decoding does not support GPT-2 with cross-attention")
    for block in lm.transformer.h:
        for conv in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            if type(conv).__name__ != "Conv1D":
                continue  # turned into a linear layer (int8 inference)
            w = conv.weight.data
            if not w.t().is_contiguous():
                conv.weight.data = w.t().contiguous().t()


@torch.no_grad()
def gpt2_step(lm: nn.Module, tokens: torch.Tensor, positions: torch.Tensor,
              cache: SplitCache) -> torch.Tensor:
    """Next-token logits (M, V) after feeding one token per sequence to a ``GPT2LMHeadModel``
    (run :func:`prepare_gpt2` on it once first)."""
    gpt = lm.transformer
    x = gpt.wte(tokens) + gpt.wpe(positions)
    rows = x.shape[0]
    for i, block in enumerate(gpt.h):
        att = block.attn
        heads, dim = att.num_heads, att.head_dim
        qkv = project(att.c_attn, block.ln_1(x))
        q, k, v = (part.reshape(rows, heads, dim) for part in qkv.split(att.split_size, dim=1))
        ctx = cache.attend(i, q, k, v, att.scaling)
        x = project(att.c_proj, ctx) + x
        mlp = block.mlp
        h = mlp.act(project(mlp.c_fc, block.ln_2(x)))
        x = project(mlp.c_proj, h) + x
    cache.advance()
    return project(lm.lm_head, gpt.ln_f(x))
