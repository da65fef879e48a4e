"""Cached UniLM beam search against full recomputation at every step (the bert4keras way).

A BERT-base-sized UniLM (12 layers, 768 hidden, 12 heads, a 21,128-token vocabulary like
bert-base-chinese; random weights) titles articles of 256 content tokens: 32 new tokens, beam 3,
batch 1 and batch 8. Both runs use the same beam search (zhtext.neural.decoding); the only difference is
the step function: zhtext's key/value cache, or the anchor's re-run of ``[CLS] content [SEP]
title-so-far`` for every beam at every step. The titles must be identical. EOS is banned (min
length 32) so every run does the full 32 steps. Both sides are warmed up (two steps) at each batch
size before they are timed.

    python benchmarks/title_decode.py            # batch 1 and 8
    python benchmarks/title_decode.py --quick    # 6 layers, 8 new tokens, batch 1 and 2

The last line is one JSON object: {"bench": "title_decode", "speedup", "identical", ...}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_json, log

from zhtext.neural.decoding import DecodeConfig, generate
from zhtext.tasks.title import CachedStep, RecomputeStep, UniLM


def build(layers: int) -> UniLM:
    from transformers import BertConfig, BertLMHeadModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=layers,
                        num_attention_heads=12, intermediate_size=3072, is_decoder=True)
    return UniLM(BertLMHeadModel(config)).eval()


def run(stepper, ids, lengths, options, sep) -> tuple[list, float]:
    begin = time.perf_counter()
    logits, state = stepper.prefill(ids, lengths)
    out = generate(stepper, logits, state, options, [sep])
    return out, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller model and fewer steps.")
    parser.add_argument("--source-len", type=int, default=256, help="Content tokens per article.")
    parser.add_argument("--new-tokens", type=int, default=None, help="Title tokens (default 32).")
    parser.add_argument("--beam", type=int, default=3, help="Beam width.")
    parser.add_argument("--batch", type=int, action="append", help="Batch sizes (default 1 and 8).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = 6 if args.quick else 12
    new_tokens = args.new_tokens or (8 if args.quick else 32)
    batches = args.batch or ([1, 2] if args.quick else [1, 8])
    model = build(layers)
    sep = 102  # bert-base-chinese's [SEP]
    options = DecodeConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                            beam=args.beam)
    figures: dict = {"bench": "title_decode", "layers": layers, "hidden": 768,
                     "source_len": args.source_len, "new_tokens": new_tokens, "beam": args.beam,
                     "threads": torch.get_num_threads(), "quick": args.quick}
    identical = True
    speedups = []
    gen = torch.Generator().manual_seed(1)
    for batch in batches:
        # Articles of different lengths (the longest has source_len content tokens), right-padded.
        lengths = torch.tensor([args.source_len + 2 - 17 * i for i in range(batch)])
        ids = torch.randint(106, 21128, (batch, int(lengths.max())), generator=gen)
        ids[:, 0] = 101
        ids[torch.arange(batch), lengths - 1] = sep
        ids[torch.arange(ids.shape[1])[None] >= lengths[:, None]] = 0
        warm = DecodeConfig(max_new_tokens=2, min_new_tokens=2, beam=args.beam)
        for stepper in (CachedStep(model), RecomputeStep(model)):  # warm-up at this batch size
            run(stepper, ids, lengths, warm, sep)
        cached, t_cached = run(CachedStep(model), ids, lengths, options, sep)
        log(f"batch {batch}: cached {t_cached:.2f} s")
        full, t_full = run(RecomputeStep(model), ids, lengths, options, sep)
        same = cached == full
        identical &= same
        speedups.append(t_full / t_cached)
        log(f"batch {batch}: recompute {t_full:.2f} s -> speedup {t_full / t_cached:.1f}x, "
            f"identical titles: {same}")
        figures[f"cached_s_b{batch}"] = round(t_cached, 3)
        figures[f"recompute_s_b{batch}"] = round(t_full, 3)
        figures[f"speedup_b{batch}"] = round(t_full / t_cached, 2)
    figures["speedup"] = round(min(speedups), 2)
    figures["identical"] = identical
    emit_json(figures)


if __name__ == "__main__":
    main()
