"""Does masked-LM pretraining on the raw text at hand help the from-scratch models? At the same total
training budget on this CPU:

1. ``zhtext train mlm``-style pretraining of a small BERT on raw text (the CLUENER train and test
   texts, the LCSTS training articles and titles, People's Daily NER texts where present; the
   novels of ``raw/`` are classical Chinese and left out), with whole-word masking over a lexicon
   discovered from that same text, for ``P`` seconds;
2. a CLUENER tagger fine-tuned from it for ``T`` seconds, against a tagger trained from scratch
   (same size) for ``P + T`` seconds: best dev F1 of each (both with the BiLSTM and the moving
   average of the weights that ``tagger_cluener.py`` uses; ``--no-lstm``, ``--ema 0``);
3. the same with character masking instead of whole-word masking (``wwm_vs_char``);
4. LCSTS titles fine-tuned from the whole-word model for ``T`` seconds against titles from scratch
   for ``P + T`` seconds: ROUGE-L (greedy) on LCSTS val articles (``--no-titles`` skips: null).

Budgets count training seconds (the trainer's ``max_seconds``); discovering the lexicon is timed
apart and reported. Data absent under ../shared/data: the part is skipped (its figures null).

    python benchmarks/pretrain.py --quick

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, log, raw_texts, read_quiet  # noqa: E402

CLUENER = DATA_DIR / "ner" / "cluener"
LCSTS = DATA_DIR / "title" / "lcsts"


def raw_corpus(out: Path, seed: int) -> dict:
    """The pretraining text, lines interleaved (a short budget sees every source), in ``out``."""
    lines, sources = raw_texts()
    order = np.random.default_rng(seed).permutation(len(lines))
    out.write_text("".join(lines[i] + "\n" for i in order), encoding="utf-8")
    return {"sources": sources, "lines": len(lines), "chars": sum(len(x) for x in lines)}


def pretrain(corpus: Path, masking: str, lexicon, args) -> tuple[str, dict]:
    from zhtext.tasks.mlm import MaskedLM, MLMTrainConfig

    out = tempfile.mkdtemp(prefix=f"pretrain-{masking}-")
    model = MaskedLM.train(MLMTrainConfig(
        train=[corpus], output=out, masking=masking, lexicon=lexicon, heldout_every=100,
        dev_limit=300, layers=args.layers, hidden=args.hidden, max_len=args.mlm_max_len,
        batch_size=args.batch_size, lr=args.mlm_lr, epochs=100, max_seconds=args.pretrain,
        eval_every=10**6, seed=args.seed, min_char_count=2, progress=args.progress))
    last = model.history[-1]
    log(f"MLM ({masking} masking): {last['step']} steps in {last['seconds']:.0f} s, held-out "
        f"masked accuracy {last['accuracy']:.4f}, perplexity {last['ppl']:.1f}")
    return out, {"steps": last["step"], "mlm_accuracy": round(last["accuracy"], 4),
                 "mlm_ppl": round(last["ppl"], 2)}


def tagger_f1(train, dev, start: str | None, seconds: float, lr: float, args) -> float:
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

    out = tempfile.mkdtemp(prefix="pretrain-tagger-")
    tagger = Tagger.train(TaggerTrainConfig(
        train=train, dev=dev, output=out, model=start, layers=args.layers, hidden=args.hidden,
        epochs=1000, max_seconds=seconds, batch_size=args.batch_size, lr=lr, max_len=64,
        dropout=0.3 if start is None else 0.1, seed=args.seed, min_char_count=2,
        lstm=args.lstm, ema=args.ema,  # both sides alike: only the starting weights differ
        progress=args.progress))
    f1 = round(tagger.meta["best"]["f1"], 4)
    log(f"tagger from {start or 'scratch'} for {seconds:.0f} s: best dev F1 {f1} "
        f"({tagger.history[-1]['step']} steps)")
    return f1


def title_rouge_l(train, val, start: str | None, seconds: float, lr: float, args) -> float:
    from zhtext.tasks.title import TitleGenerator, TitleTrainConfig

    out = tempfile.mkdtemp(prefix="pretrain-title-")
    gen = TitleGenerator.train(TitleTrainConfig(
        train=train, output=out, model=start, layers=args.layers, hidden=args.hidden,
        max_source_len=96, max_target_len=24, epochs=1000, batch_size=args.batch_size, lr=lr,
        max_seconds=seconds, seed=args.seed, progress=args.progress,
        prior=True, copy=True))  # both sides alike (a pretrained start has neither of its own)
    scores = gen.evaluate(val, beam=1, max_new_tokens=24)
    rouge = round(100 * scores["rouge-l"], 2)
    log(f"titles from {start or 'scratch'} for {seconds:.0f} s: LCSTS val ROUGE-L {rouge} "
        f"(greedy, {scores['count']} articles)")
    return rouge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="40 s of pretraining and 40 s of fine-tuning, 2000 CLUENER sentences")
    parser.add_argument("--pretrain", type=float, default=None, help="Pretraining seconds P.")
    parser.add_argument("--finetune", type=float, default=None, help="Fine-tuning seconds T.")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mlm-max-len", type=int, default=128)
    parser.add_argument("--mlm-lr", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=2e-3, help="Tagger from scratch.")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="Tagger from the MLM.")
    parser.add_argument("--title-lr", type=float, default=1e-3)
    parser.add_argument("--lstm", action=argparse.BooleanOptionalAction, default=True,
                        help="a BiLSTM before the tag scores, on both sides (train tagger's default "
                             "from scratch)")
    parser.add_argument("--ema", type=float, default=0.999,
                        help="the taggers' moving average of the weights, both sides (0: off)")
    parser.add_argument("--no-titles", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    args.pretrain = args.pretrain or (40.0 if args.quick else 300.0)
    args.finetune = args.finetune or (40.0 if args.quick else 300.0)
    total = args.pretrain + args.finetune
    torch.set_num_threads(args.threads)
    figures: dict = {"bench": "pretrain", "quick": args.quick, "tagger_f1_pretrained": None,
                     "tagger_f1_scratch": None, "title_rouge_l_pretrained": None,
                     "title_rouge_l_scratch": None, "wwm_vs_char": None,
                     "pretrain_s": args.pretrain, "finetune_s": args.finetune,
                     "layers": args.layers, "hidden": args.hidden, "threads": args.threads,
                     "tagger_lstm": args.lstm, "tagger_ema": args.ema}
    work = Path(tempfile.mkdtemp(prefix="pretrain-bench-"))
    corpus = work / "corpus.txt"
    about = raw_corpus(corpus, args.seed)
    figures["corpus"] = about
    if not about["lines"]:
        log(f"no raw text under {DATA_DIR}: skipping")
        figures["skipped"] = f"no data under {DATA_DIR}"
        emit_json(figures)
        return
    log(f"raw text: {about['lines']} lines, {about['chars']} characters from {about['sources']}")

    from zhtext.lexical.discover import Discoverer

    begin = time.perf_counter()
    lexicon = Discoverer(progress=args.progress).run(corpus)
    figures["discover_s"] = round(time.perf_counter() - begin, 1)
    figures["lexicon_words"] = len(lexicon)
    log(f"discovered {len(lexicon)} words in {figures['discover_s']} s")

    wwm_dir, figures["mlm_wwm"] = pretrain(corpus, "word", lexicon, args)
    char_dir, figures["mlm_char"] = pretrain(corpus, "char", None, args)

    if (CLUENER / "train.json").is_file() and (CLUENER / "dev.json").is_file():
        from zhtext.labels.formats import read_examples

        train = read_quiet(read_examples, CLUENER / "train.json")
        dev = read_quiet(read_examples, CLUENER / "dev.json")
        if args.quick:
            train, dev = train[:2000], dev[:300]
        wwm = tagger_f1(train, dev, wwm_dir, args.finetune, args.finetune_lr, args)
        char = tagger_f1(train, dev, char_dir, args.finetune, args.finetune_lr, args)
        scratch = tagger_f1(train, dev, None, total, args.lr, args)
        figures.update(tagger_f1_pretrained=wwm, tagger_f1_scratch=scratch,
                       wwm_vs_char={"tagger_f1_wwm": wwm, "tagger_f1_char": char,
                                    "difference": round(wwm - char, 4)},
                       tagger_sentences={"train": len(train), "dev": len(dev)})
    else:
        log(f"CLUENER not found under {CLUENER}: no tagger figures")

    if not args.no_titles and (LCSTS / "train.tsv").is_file() and (LCSTS / "val.tsv").is_file():
        from zhtext.tasks.titledata import read_pairs

        train = read_pairs(LCSTS / "train.tsv")
        val = read_pairs(LCSTS / "val.tsv")[: 100 if args.quick else None]
        figures["title_rouge_l_pretrained"] = title_rouge_l(train, val, wwm_dir, args.finetune,
                                                            args.title_lr, args)
        figures["title_rouge_l_scratch"] = title_rouge_l(train, val, None, total, args.title_lr,
                                                         args)
        figures["title_val_articles"] = len(val)
    emit_json(figures)


if __name__ == "__main__":
    main()
