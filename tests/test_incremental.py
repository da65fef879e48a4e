"""The one-token step kernels: skinny products, the split cache, and steps equal to recomputation."""

from __future__ import annotations

import pytest
import torch

from zhtext.neural.incremental import (
    SplitCache,
    _groups,
    gpt2_step,
    prefill,
    prepare_gpt2,
    skinny_linear,
)


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 7, 64, 65, 80])
@pytest.mark.parametrize("with_bias", [True, False])
def test_skinny_linear_equals_linear(rows, with_bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 48, generator=g)
    w = torch.randn(70, 48, generator=g)
    b = torch.randn(70, generator=g) if with_bias else None
    out = skinny_linear(x, w, b)
    assert out.shape == (rows, 70)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_groups_recognises_equal_consecutive_runs_only():
    assert _groups([0, 0, 1, 1, 2, 2]) == ([0, 1, 2], 2)
    assert _groups([2, 2, 2, 0, 0, 0]) == ([2, 0], 3)
    assert _groups([0, 1, 2]) == ([0, 1, 2], 1)
    assert _groups([]) == ([], 1)
    assert _groups([0, 0, 1]) is None          # uneven
    assert _groups([0, 1, 0, 1]) is None       # an input in two runs
    assert _groups([0, 0, 1, 1, 0, 0]) is None


class BruteCache:
    """Each row's keys and values in full, attention by its definition."""

    def __init__(self, pk, pv, valid):
        self.rows = [([pk[layer][n][:, valid[n]] for layer in range(len(pk))],
                      [pv[layer][n][:, valid[n]] for layer in range(len(pv))])
                     for n in range(len(valid))]

    def attend(self, layer, q, k, v, scale):
        out = []
        for r, (ks, vs) in enumerate(self.rows):
            ks[layer] = torch.cat([ks[layer], k[r][:, None]], dim=1)
            vs[layer] = torch.cat([vs[layer], v[r][:, None]], dim=1)
            probs = torch.softmax((q[r][:, None] @ ks[layer].transpose(-1, -2)) * scale, dim=-1)
            out.append((probs @ vs[layer])[:, 0].reshape(-1))
        return torch.stack(out)

    def reorder(self, index):
        self.rows = [([t.clone() for t in self.rows[i][0]], [t.clone() for t in self.rows[i][1]])
                     for i in index.tolist()]


def test_split_cache_equals_brute_force_through_reorders_and_growth():
    g = torch.Generator().manual_seed(0)
    layers, n, heads, width, dim = 2, 3, 2, 5, 4
    pk = [torch.randn(n, heads, width, dim, generator=g) for _ in range(layers)]
    pv = [torch.randn(n, heads, width, dim, generator=g) for _ in range(layers)]
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    fast, brute = SplitCache(pk, pv, valid), BruteCache(pk, pv, valid)
    # Beams (each input three times), a shuffle within groups, an input leaving, then uneven rows.
    reorders = {0: [0, 0, 0, 1, 1, 1, 2, 2, 2], 3: [2, 2, 1, 3, 5, 4, 8, 6, 6],
                7: [0, 1, 2, 6, 7, 8], 11: [0, 0, 4, 5, 5], 20: [4, 1], 30: [1]}
    for step in range(40):  # past the buffer's first doubling (16 tokens)
        if step in reorders:
            index = torch.tensor(reorders[step])
            fast.reorder(index)
            brute.reorder(index)
        rows = len(fast.owner)
        for layer in range(layers):
            q, k, v = (torch.randn(rows, heads, dim, generator=g) for _ in range(3))
            torch.testing.assert_close(fast.attend(layer, q, k, v, 0.5),
                                       brute.attend(layer, q, k, v, 0.5), rtol=1e-5, atol=1e-5)
        fast.advance()


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(config).eval()


def test_gpt2_steps_equal_recomputation_with_padding_and_reorders():

    lm = tiny_gpt2()
    reference = tiny_gpt2()  # untouched memory layout
    prepare_gpt2(lm)
    for a, b in zip(lm.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        _, cache = prefill(lm.transformer, lm.config, input_ids=ids, attention_mask=mask,
                           position_ids=positions)
    split = SplitCache.from_hf(cache, mask.bool())
    rows = [ids[0, 2:].tolist(), ids[1].tolist()]
    next_pos = positions[:, -1] + 1
    g = torch.Generator().manual_seed(3)
    for step in range(20):
        if step == 2:  # two copies of each prompt
            index = torch.tensor([0, 0, 1, 1])
        elif step == 9:  # uneven
            index = torch.tensor([3, 0, 2])
        else:
            index = None
        if index is not None:
            split.reorder(index)
            rows = [list(rows[i]) for i in index.tolist()]
            next_pos = next_pos[index]
        tokens = torch.randint(0, 50, (len(rows),), generator=g)
        logits = gpt2_step(lm, tokens, next_pos, split)
        next_pos = next_pos + 1
        for r, t in enumerate(tokens.tolist()):
            rows[r].append(t)
            with torch.no_grad():
                full = reference(input_ids=torch.tensor([rows[r]])).logits[0, -1]
            torch.testing.assert_close(logits[r], full, rtol=1e-4, atol=1e-5)
