"""zhtext GPT-2 generation against transformers' ``model.generate()``, and a small model trained
from scratch on the four classical novels.

Speed: a GPT-2-small-sized model (12 layers, 768 hidden, 12 heads, 1,024 positions) with random
weights and a 21,128-token vocabulary like uer/gpt2-chinese-cluecorpussmall's BERT tokenizer. Greedy
decoding of the same left-padded prompts (32 characters, shorter ones in a batch) with the same
model: zhtext (``TextGenerator``, KV cache) and ``model.generate(do_sample=False, num_beams=1)``
with the same attention mask; tokens/s at batch 1 and 8, and transformers with ``use_cache=False``
to show what the cache buys. EOS is banned (min new tokens = max) so every run does the same work.
The outputs must be identical token for token. Then the time to the first streamed token.

Quality: a small GPT-2 (4 layers, 256 hidden, 128 positions, character vocabulary) trained on the
novels in ``../shared/data/raw`` within a fixed time budget; its perplexity and bits per character
on held-out lines (every 100th line, never trained on).

    python benchmarks/generate_vs_hf.py                 # 64 new tokens, 300 s of training
    python benchmarks/generate_vs_hf.py --quick         # 16 new tokens, 30 s of training

The last line is one JSON object: {"bench": "generate_vs_hf", "ratio_b1", "ratio_b8",
"identical_greedy", "first_token_s", "heldout_ppl", ...}.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, log, race

from zhtext.neural.batching import pad
from zhtext.neural.decoding import DecodeConfig
from zhtext.neural.scratch import SPECIAL_TOKENS, char_tokenizer
from zhtext.tasks.generate import GPTTrainConfig, TextGenerator

NOVELS = ("hongloumeng.txt", "shuihuzhuan.txt", "sanguoyanyi.txt", "xiyouji.txt")
VOCAB = 21128  # bert-base-chinese / uer GPT-2


def build_generator() -> TextGenerator:
    """GPT-2 small with random weights over a 21,128-entry character vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = list(SPECIAL_TOKENS) + [chr(0x4E00 + i) for i in range(VOCAB - len(SPECIAL_TOKENS))]
    tokenizer = char_tokenizer(vocab, model_max_length=1024)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return TextGenerator(GPT2LMHeadModel(config), tokenizer, batch_size=8)


def prompts_for(batch: int, length: int, gen: torch.Generator) -> list[str]:
    # Different lengths within a batch, so left padding is exercised.
    sizes = [max(4, length - 3 * i) for i in range(batch)]
    return ["".join(chr(0x4E00 + int(c)) for c in torch.randint(0, 3000, (n,), generator=gen))
            for n in sizes]


def run_ours(tg: TextGenerator, prompts: list[str], new: int) -> list[list[int]]:
    options = DecodeConfig(max_new_tokens=new, min_new_tokens=new)
    return [seqs[0] for _, seqs in tg.generate_ids(prompts, options)]


@torch.no_grad()
def run_hf(tg: TextGenerator, lm: torch.nn.Module, prompts: list[str], new: int,
           use_cache: bool = True) -> list[list[int]]:
    ids, mask = pad(tg.prompt_ids(prompts, new), tg.pad_id, left=True, device=tg.device)
    out = lm.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                         max_new_tokens=new, min_new_tokens=new, eos_token_id=tg.eos_ids,
                         pad_token_id=tg.pad_id, use_cache=use_cache)
    return out[:, ids.shape[1]:].tolist()


def speed(args, figures: dict) -> None:
    tg = build_generator()
    # transformers gets its own copy: zhtext stores the Conv1D weights output-major for its steps
    # (same values), which would change the memory layout transformers' kernels see.
    hf_lm = copy.deepcopy(tg.lm)
    new = 16 if args.quick else 64
    repeats = 2 if args.quick else 3
    gen = torch.Generator().manual_seed(1)
    figures.update({"layers": 12, "hidden": 768, "vocab": VOCAB, "prompt_chars": args.prompt_len,
                    "new_tokens": new})
    identical = True
    for batch in (1, 8):
        prompts = prompts_for(batch, args.prompt_len, gen)
        run_ours(tg, prompts, 2), run_hf(tg, hf_lm, prompts, 2)  # warm-up at this batch size
        best = race({"ours": lambda p=prompts: run_ours(tg, p, new),
                     "hf": lambda p=prompts: run_hf(tg, hf_lm, p, new)}, repeats)
        ours, hf, t_ours, t_hf = best["ours"].output, best["hf"].output, best["ours"].wall, best["hf"].wall
        same = ours == hf
        identical &= same
        tokens = batch * new
        figures[f"tok_s_zhtext_b{batch}"] = round(tokens / t_ours, 2)
        figures[f"tok_s_hf_b{batch}"] = round(tokens / t_hf, 2)
        figures[f"ratio_b{batch}"] = round(t_hf / t_ours, 3)
        log(f"batch {batch}: zhtext {tokens / t_ours:8.1f} tok/s   transformers {tokens / t_hf:8.1f} "
            f"tok/s   ratio {t_hf / t_ours:.2f}x   identical {same}")
        if batch == 1 or not args.quick:
            t_off = race({"off": lambda p=prompts: run_hf(tg, hf_lm, p, new, use_cache=False)}, 1)["off"].wall
            figures[f"tok_s_hf_nocache_b{batch}"] = round(tokens / t_off, 2)
            figures[f"cache_speedup_b{batch}"] = round(t_off / t_ours, 2)
            log(f"batch {batch}: transformers without cache {tokens / t_off:8.1f} tok/s "
                f"(zhtext's cache is {t_off / t_ours:.1f}x faster)")
    figures["identical_greedy"] = identical

    # Time to the first streamed token of a sampled continuation, after loading.
    prompt = prompts_for(1, args.prompt_len, gen)[0]
    firsts = []
    for seed in range(5):
        begin = time.perf_counter()
        stream = tg.stream(prompt, max_new_tokens=new, seed=seed)
        next(piece for piece in stream if piece.text)
        firsts.append(time.perf_counter() - begin)
        stream.close()
    figures["first_token_s"] = round(statistics.median(firsts), 4)
    log(f"first streamed token after {figures['first_token_s'] * 1000:.1f} ms (median of 5)")


def quality(args, figures: dict) -> None:
    from zhtext.io.reading import iter_many_lines
    from zhtext.neural.lmdata import split_heldout

    paths = [DATA_DIR / "raw" / name for name in NOVELS]
    if not all(p.is_file() for p in paths):
        log(f"skipped training: the novels are not under {DATA_DIR / 'raw'}")
        figures["heldout_ppl"] = None
        return
    train, held = split_heldout(iter_many_lines(paths, max_chars=5000), every=100)
    held = held[: args.heldout_lines]
    budget = args.train_seconds if args.train_seconds is not None else (30 if args.quick else 300)
    log(f"training a small GPT-2 on {len(train)} lines for {budget} s; {len(held)} held-out lines")
    with tempfile.TemporaryDirectory() as out:
        begin = time.perf_counter()
        # Warm-up 0.05, as in the runs the README quotes (the trainer's default is now 0.1).
        tg = TextGenerator.train(GPTTrainConfig(
            train=train, output=out, layers=4, hidden=256, block_size=128, batch_size=16, lr=1e-3,
            epochs=1, warmup=0.05, max_seconds=budget, min_char_count=2, progress=not args.quick))
        seconds = time.perf_counter() - begin
        scores = tg.evaluate(held)
        sample = tg("林黛玉", max_new_tokens=40, seed=1, top_k=20, repetition_penalty=1.2)
    steps = tg.history[-1]["step"] if tg.history else None
    log(f"held-out perplexity {scores['ppl']:.2f}, {scores['bits_per_char']:.3f} bits/char "
        f"after {steps} steps ({seconds:.0f} s in all); sample: 林黛玉{sample}")
    figures.update({"heldout_ppl": round(scores["ppl"], 3),
                    "heldout_bits_per_char": round(scores["bits_per_char"], 4),
                    "heldout_lines": len(held), "train_budget_s": budget, "train_steps": steps,
                    "vocab_small": len(tg.tokenizer)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer tokens, shorter training.")
    parser.add_argument("--prompt-len", type=int, default=32, help="Characters of the longest prompt.")
    parser.add_argument("--train-seconds", type=float, default=None,
                        help="Training budget in seconds (default 300, --quick 30; 0 skips).")
    parser.add_argument("--heldout-lines", type=int, default=500, help="Held-out lines to score.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    figures: dict = {"bench": "generate_vs_hf", "quick": args.quick, "threads": torch.get_num_threads()}
    speed(args, figures)
    if args.train_seconds == 0:
        figures["heldout_ppl"] = None
    else:
        quality(args, figures)
    emit_json(figures)


if __name__ == "__main__":
    main()
