"""LCSTS titles with a from-scratch UniLM trained on this CPU within a fixed time budget, with
and without the title prior and copying.

Trains a small BERT (character vocabulary from the training data, UniLM mask) on
``../shared/data/title/lcsts/train.tsv`` for ``--budget`` seconds (the learning rate decays over
the budget) once per variant, the same way except for the title prior (Su Jianlin's: the
article's characters made likelier in its title by a learned scale and shift per character) and
copying (a pointer-generator: a title token copied from an article position it attends to),
with the loss label-smoothed by ``--label-smoothing`` (0.1, ``train title``'s default),
then reports for each ROUGE-1/2/L F1 and BLEU (greedy and beam 3) on ``lcsts/val.tsv`` and
``csl/val.tsv`` (a different domain: computer-science abstracts; CLGE's CSL train split is not
available here), how many titles came out empty, and decoding throughput.

Anchor (published): a pretrained BERT-base UniLM fine-tuned on CSL reaches ROUGE-L 63.8 greedy and
64.8 with beam 3 (bert4keras's example). A model trained from scratch in minutes on two CPU cores is
not expected to come near; the figure to watch is how ROUGE grows with the budget.

    python benchmarks/title_lcsts.py --quick          # 60 s budget each, 200 articles per val set
    python benchmarks/title_lcsts.py --budget 600   # 3x128 models
    python benchmarks/title_lcsts.py --quick --variants prior+copy   # one model only

Variants (``--variants``, default ``prior+copy,copy,prior``): ``prior+copy`` (what ``zhtext train
title --from-scratch`` builds), ``copy`` (no prior), ``prior`` (no copying) and ``none``.

The last line is one JSON object: {"bench": "title_lcsts", "lcsts_rouge_l",
"lcsts_rouge_l_no_prior", "lcsts_rouge_l_no_copy", "csl_rouge_l", "csl_rouge_l_no_prior",
"lcsts_rouge_l_greedy", "lcsts_empty", "lcsts_lead", "train_s", ...}: keys without a suffix are
the model with the prior and copying and beam 3, ``_greedy`` greedy decoding, ``_no_prior`` the
model without the prior, ``_no_copy`` without copying, ``_neither`` without both; ROUGE figures
are percentages, ``*_empty`` counts of empty titles; ``*_lead`` is the ROUGE-L of the article's
first 20 characters as its title (no model: the extractive floor to compare with).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_files, emit_json, log

from zhtext.eval.metrics import average_rouge
from zhtext.tasks.title import TitleGenerator, TitleTrainConfig
from zhtext.tasks.titledata import read_pairs

PUBLISHED_CSL = {"greedy": 63.8, "beam3": 64.8}


# Variant name: (prior, copy, suffix of its JSON keys).
VARIANTS = {"prior+copy": (True, True, ""), "copy": (False, True, "_no_prior"),
            "prior": (True, False, "_no_copy"), "none": (False, False, "_neither")}
LEAD_CHARS = 20


def train_one(train: list, out: Path, args: argparse.Namespace, budget: float, prior: bool,
              copy: bool) -> tuple[TitleGenerator, float]:
    log(f"training {args.layers}x{args.hidden} from scratch {'with' if prior else 'without'} the "
        f"prior, {'with' if copy else 'without'} copying, on {len(train)} pairs for {budget:.0f} s")
    begin = time.perf_counter()
    gen = TitleGenerator.train(TitleTrainConfig(
        train=train, output=out, layers=args.layers, hidden=args.hidden,
        max_source_len=args.max_source_len, max_target_len=32, epochs=1000,
        batch_size=args.batch_size, lr=args.lr, max_seconds=budget, prior=prior, copy=copy,
        ema=args.ema, seed=args.seed, label_smoothing=args.label_smoothing,
        progress=sys.stderr.isatty()))
    return gen, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="60 s budget, a 2x128 model, 200 val articles each.")
    parser.add_argument("--budget", type=float, default=None,
                        help="Training seconds per model (default 600).")
    parser.add_argument("--limit", type=int, default=None,
                        help="Val articles per set (default all).")
    parser.add_argument("--layers", type=int, default=None, help="Transformer layers (3; quick 2).")
    parser.add_argument("--hidden", type=int, default=None, help="Hidden size (128).")
    parser.add_argument("--batch-size", type=int, default=32, help="Pairs per batch.")
    parser.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate.")
    parser.add_argument("--max-source-len", type=int, default=160, help="Content tokens kept.")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="Decay of the weights' moving average that is kept (0: off).")
    parser.add_argument("--label-smoothing", type=float, default=0.1,
                        help="Label smoothing of the training loss (default 0.1, as train title).")
    parser.add_argument("--seed", type=int, default=0,
                        help="Seed of the initial weights and the batch order (default 0).")
    parser.add_argument("--variants", default="prior+copy,copy,prior",
                        help="Comma-separated models to train: prior+copy, copy, prior, none.")
    parser.add_argument("-o", "--output", "--out", dest="output", default=None,
                        help="Folder of the models (default: a temporary one).")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants takes a comma-separated list of {', '.join(VARIANTS)}")
    budget = args.budget or (60.0 if args.quick else 600.0)
    limit = args.limit or (200 if args.quick else None)
    # 3x128: the best size measured for 600 s on two cores (CSL 25.7, the mean of three seeds,
    # against 24.7 in a 2x128 run; 4x256, ``train title --from-scratch``'s, makes too few steps).
    args.layers = args.layers or (2 if args.quick else 3)
    args.hidden = args.hidden or 128
    train_file, lcsts_val, csl_val = data_files("title/lcsts/train.tsv", "title/lcsts/val.tsv",
                                                "title/csl/val.tsv")
    train = read_pairs(train_file)
    val = {name: read_pairs(path)[:limit]
           for name, path in (("lcsts", lcsts_val), ("csl", csl_val))}
    out = Path(args.output or tempfile.mkdtemp(prefix="title-lcsts-"))
    figures: dict = {"bench": "title_lcsts", "budget_s": budget, "layers": args.layers,
                     "hidden": args.hidden, "threads": torch.get_num_threads(), "quick": args.quick,
                     "ema": args.ema, "seed": args.seed,
                     "label_smoothing": args.label_smoothing}
    for name, pairs in val.items():
        lead = average_rouge((p.title, p.content[:LEAD_CHARS]) for p in pairs)
        figures[f"{name}_lead"] = round(100 * lead["rouge-l"], 2)
        log(f"{name}: the first {LEAD_CHARS} characters as the title: ROUGE-L "
            f"{figures[f'{name}_lead']:.2f}")
    for variant in variants:
        prior, copy, tail = VARIANTS[variant]
        folder = out / variant
        gen, train_s = train_one(train, folder, args, budget, prior, copy)
        figures[f"train_s{tail}"] = round(train_s, 1)
        figures[f"steps{tail}"] = gen.history[-1]["step"] if gen.history else 0
        figures[f"epochs{tail}"] = gen.history[-1]["epoch"] if gen.history else 0
        for name, pairs in val.items():
            for label, beam in (("greedy", 1), ("beam3", 3)):
                scores = gen.evaluate(pairs, beam=beam, max_new_tokens=32)
                log(f"{variant} {name} {label}: ROUGE-1 "
                    f"{100 * scores['rouge-1']:.2f}  ROUGE-2 {100 * scores['rouge-2']:.2f}  "
                    f"ROUGE-L {100 * scores['rouge-l']:.2f}  BLEU {100 * scores['bleu']:.2f}  "
                    f"empty {scores['empty']}  ({scores['count']} articles, "
                    f"{scores['articles_per_s']:.1f}/s)")
                suffix = ("" if beam == 3 else "_greedy") + tail
                for key in ("rouge-1", "rouge-2", "rouge-l", "bleu"):
                    figures[f"{name}_{key.replace('-', '_')}{suffix}"] = round(100 * scores[key], 2)
                figures[f"{name}_empty{suffix}"] = scores["empty"]
                figures[f"{name}_articles_per_s{suffix}"] = round(scores["articles_per_s"], 2)
            figures[f"{name}_count"] = len(pairs)
    log(f"published anchor (pretrained BERT-base, CSL): ROUGE-L {PUBLISHED_CSL['greedy']} greedy, "
        f"{PUBLISHED_CSL['beam3']} beam 3")
    figures["anchor_csl_rouge_l"] = PUBLISHED_CSL["beam3"]
    emit_json(figures)


if __name__ == "__main__":
    main()
