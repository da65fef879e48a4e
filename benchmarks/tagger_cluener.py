"""CLUENER NER with a from-scratch BERT+CRF tagger on this CPU, within fixed time budgets.

For each budget, trains a small BERT (character vocabulary from the training data) on
``../shared/data/ner/cluener/train.json`` with ``max_seconds`` = budget (the learning rate decays
over the budget; a moving average of the weights, ``--ema`` 0.999, is what is scored and kept;
a BiLSTM reads the encoder's states before the tag scores, as ``train tagger`` has it from
scratch, ``--no-lstm`` leaves it out),
picks the best epoch by dev F1 (``dev.json``, the split papers report), and reports dev F1 against
the budget, three times over: without a lexicon, with a lexicon discovered from the training text
(``zhtext.discover``), and with jieba's dictionary (lexicon-aware tagging: per-character B/M/E/S
features of the lexicon's words, see ``zhtext.lexical.softlex``); ``--lexicons raw`` adds one
discovered from the training text with the unlabelled text at hand (CLUENER test, LCSTS, People's
Daily; never the dev texts). Then it tags the dev set with the last model and measures
throughput (sentences/s) and the share of tagging time spent in the CRF decode (Numba Viterbi) and
in the exact span/path probabilities. Finally the same decode share with a BERT-base-sized encoder
(random weights: 12 layers, 768 hidden), where the anchor is pytorch-crf's ``decode`` timed on the
identical emissions, if installed.

Anchors (published, pretrained bert-base-chinese + CRF): 79.5 to 80.8 dev F1 on CLUENER. A model
trained from scratch in minutes on two CPU cores is not expected to reach them; the figure to watch
is how F1 grows with the budget.

    python benchmarks/tagger_cluener.py --quick
    python benchmarks/tagger_cluener.py --budget 150 --budget 450

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, log, raw_texts  # noqa: E402

DATA = DATA_DIR / "ner" / "cluener"
PUBLISHED_BERT_CRF = (79.5, 80.8)


# the lexicons compared: none, discovered from the training text, jieba's dictionary; and on
# request discovered from the training text with the other unlabelled text at hand
LEXICONS = {"none": "dev_f1", "discovered": "dev_f1_lexicon", "jieba": "dev_f1_jieba_lexicon",
            "raw": "dev_f1_raw_lexicon"}
DEFAULT_LEXICONS = "none,discovered,jieba"


def train_with_budget(train, dev, budget: float, args, lexicon=None, name: str = "none") -> dict:
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

    out = tempfile.mkdtemp(prefix="tagger-cluener-")
    begin = time.perf_counter()
    tagger = Tagger.train(TaggerTrainConfig(
        train=train, dev=dev, output=out, layers=args.layers, hidden=args.hidden, epochs=1000,
        max_seconds=budget, batch_size=args.batch_size, lr=args.lr, max_len=args.max_len,
        seed=args.seed, dropout=args.dropout, min_char_count=2, progress=not args.no_progress,
        lexicon=lexicon, word_dim=args.word_dim, word_dropout=args.word_dropout, ema=args.ema,
        lstm=args.lstm, overwrite=True,
    ))
    train_s = time.perf_counter() - begin
    best = tagger.meta["best"]
    curve = [(round(h["seconds"], 1), round(h["f1"], 4)) for h in tagger.history]
    log(f"budget {budget:.0f} s, lexicon {name}: best dev F1 {best['f1']:.4f} at epoch "
        f"{best['epoch']}, {tagger.history[-1]['step']} steps in {train_s:.1f} s; F1 by time {curve}")
    return {"budget_s": budget, "lexicon": name, "dev_f1": round(best["f1"], 4),
            "best_epoch": best["epoch"],
            "steps": tagger.history[-1]["step"], "train_s": round(train_s, 1), "curve": curve,
            "tagger": tagger}


def discovered_lexicon(texts: list[str]):
    """Words discovered in the raw training text (single characters included, as in jieba's
    dictionary: their counts say how often a character stands alone)."""
    from zhtext import discover

    begin = time.perf_counter()
    lexicon = discover(texts)
    log(f"discovered {len(lexicon)} words in {len(texts)} texts in "
        f"{time.perf_counter() - begin:.1f} s")
    return lexicon


def tagging_speed(tagger, texts: list[str], repeats: int = 1) -> dict:
    """Tag ``texts``; return sentences/s and the shares of encode, decode and scoring."""
    tagger.predict(texts[: tagger.batch_size])  # warm-up: Numba kernels, allocator
    for key in tagger.timings:
        tagger.timings[key] = 0.0
    begin = time.perf_counter()
    for _ in range(repeats):
        tagger.predict(texts)
    total = time.perf_counter() - begin
    t = tagger.timings
    return {"sent_per_s": round(repeats * len(texts) / total, 1), "total_s": round(total, 3),
            "decode_share": t["decode"] / total, "score_share": t["score"] / total,
            "encode_share": t["encode"] / total}


def bert_base_decode_share(train, texts: list[str], labels: list[str]) -> dict:
    """Tag with a BERT-base-sized encoder (random weights); time the CRF decode against the rest,
    and time pytorch-crf's decode on the same emissions."""
    from transformers import AutoModel, BertConfig

    from zhtext.neural.batching import length_order
    from zhtext.neural.scratch import build_char_vocab, char_tokenizer
    from zhtext.tasks.tagger import Tagger, TaggerModel, pad_emissions, tag_names

    vocab = build_char_vocab(ex.text for ex in train)
    config = BertConfig(vocab_size=max(21128, len(vocab)), hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512)
    torch.manual_seed(0)
    tags = tag_names(labels, "BIOES")
    model = TaggerModel(AutoModel.from_config(config), tags, "BIOES")
    tagger = Tagger(model, char_tokenizer(vocab), labels, "BIOES", max_len=128)
    speed = tagging_speed(tagger, texts)
    result = {"bert_base_sent_per_s": speed["sent_per_s"],
              "decode_share_bert_base": round(speed["decode_share"], 5),
              "score_share_bert_base": round(speed["score_share"], 5)}
    log(f"BERT-base size: {speed['sent_per_s']} sentences/s; decode {100 * speed['decode_share']:.3f} %, "
        f"span/path probabilities {100 * speed['score_share']:.3f} % of tagging time")
    try:
        from torchcrf import CRF as TorchCRF
    except ImportError:
        log("pytorch-crf not installed (pip install pytorch-crf): no anchor decode share")
        return result
    # The anchor decodes the very emissions zhtext decoded, with the same (constrained) scores.
    anchor = TorchCRF(len(tags), batch_first=True)
    trans, start, end = (p.detach() for p in model.crf.constrained())
    with torch.no_grad():
        anchor.transitions.copy_(trans)
        anchor.start_transitions.copy_(start)
        anchor.end_transitions.copy_(end)
    ems = tagger.emissions(texts)
    order = length_order([len(t) for t in texts])
    anchor_s = ours_s = 0.0
    identical = True
    for b in range(0, len(order), tagger.batch_size):
        em, mask = pad_emissions([ems[i] for i in order[b : b + tagger.batch_size]])
        begin = time.perf_counter()
        theirs = anchor.decode(em, mask)
        anchor_s += time.perf_counter() - begin
        begin = time.perf_counter()
        paths, _ = model.crf.decode(em, mask)
        ours_s += time.perf_counter() - begin
        identical &= all(list(paths[i, : len(p)]) == p for i, p in enumerate(theirs))
    total = speed["total_s"] - speed["decode_share"] * speed["total_s"] + anchor_s
    result.update({"anchor_decode_share_bert_base": round(anchor_s / total, 5),
                   "decode_speedup_vs_pytorch_crf": round(anchor_s / max(ours_s, 1e-9), 1),
                   "identical_paths": bool(identical)})
    log(f"pytorch-crf decode on the same emissions: {anchor_s * 1e3:.1f} ms vs zhtext {ours_s * 1e3:.1f} ms "
        f"({anchor_s / max(ours_s, 1e-9):.1f}x); it would take {100 * anchor_s / total:.2f} % of tagging "
        f"time; identical paths: {identical}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subset and a 20 s budget (smoke run)")
    parser.add_argument("--budget", type=float, action="append",
                        help="training budget in seconds (repeatable; default 150 and 450)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--max-len", type=int, default=64, help="CLUENER texts are at most 50 characters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest for small models on a busy 2-core machine)")
    parser.add_argument("--bert-texts", type=int, default=256,
                        help="dev sentences tagged with the BERT-base-sized encoder")
    parser.add_argument("--word-dim", type=int, default=50,
                        help="embeddings of the lexicon's words (0: lengths and frequencies only)")
    parser.add_argument("--word-dropout", type=float, default=0.1,
                        help="with --word-dim: share of training words shown as unseen")
    parser.add_argument("--ema", type=float, default=0.999,
                        help="decay of the weights' moving average that is scored and kept (0: off)")
    parser.add_argument("--lstm", action=argparse.BooleanOptionalAction, default=True,
                        help="a BiLSTM before the tag scores (train tagger's default from scratch)")
    parser.add_argument("--lexicons", default=DEFAULT_LEXICONS,
                        help=f"which of {', '.join(LEXICONS)} to train with (comma-separated; "
                             "raw: discovered from the training texts and the unlabelled CLUENER "
                             "test, LCSTS and People's Daily texts)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    if not (DATA / "train.json").is_file() or not (DATA / "dev.json").is_file():
        log(f"CLUENER data not found under {DATA}: skipping")
        print(json.dumps({"bench": "tagger_cluener", "skipped": f"no data at {DATA}"}))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    from zhtext.labels.formats import read_examples

    with warnings.catch_warnings():  # one nested mention in train.json is dropped, as expected
        warnings.simplefilter("ignore")
        train = read_examples(DATA / "train.json")
        dev = read_examples(DATA / "dev.json")
    from zhtext.lexical.lexicon import Lexicon

    train_texts = [ex.text for ex in train]  # all of it, raw, for discovery (also when --quick)
    budgets = args.budget or ([20.0] if args.quick else [150.0, 450.0])
    if args.quick:
        train, dev = train[:2000], dev[:300]
        args.bert_texts = min(args.bert_texts, 64)
    log(f"train {len(train)} sentences, dev {len(dev)}; budgets {budgets} s; "
        f"{args.layers} layers x {args.hidden} hidden, torch threads {torch.get_num_threads()}")

    chosen = [name for name in LEXICONS if name in args.lexicons.split(",")]
    if not chosen:
        parser.error(f"--lexicons: choose from {', '.join(LEXICONS)}")
    lexicons = {"none": lambda: None, "discovered": lambda: discovered_lexicon(train_texts),
                "jieba": Lexicon.jieba_default,
                "raw": lambda: discovered_lexicon(train_texts + raw_texts(exclude_cluener_train=True)[0])}
    lexicons = {name: lexicons[name]() for name in chosen}
    runs = [train_with_budget(train, dev, budget, args, lexicons[name], name)
            for budget in budgets for name in chosen]
    last = runs[-len(chosen)]  # the last budget's first model: the speed figures' model
    by_lexicon = {LEXICONS[run["lexicon"]]: run["dev_f1"] for run in runs[-len(chosen):]}
    texts = [ex.text for ex in dev]
    speed = tagging_speed(last["tagger"], texts)
    log(f"tagging dev with the {last['budget_s']:.0f} s model: {speed['sent_per_s']} sentences/s; "
        f"decode {100 * speed['decode_share']:.3f} %, span/path probabilities "
        f"{100 * speed['score_share']:.3f} %, encoder {100 * speed['encode_share']:.1f} %")
    lexical = runs[-1]["tagger"]  # the last lexicon (jieba's: the features' cost at its largest)
    speed_lexicon = tagging_speed(lexical, texts)
    log(f"tagging dev with the {runs[-1]['lexicon']}-lexicon model: {speed_lexicon['sent_per_s']} "
        "sentences/s")
    labels = last["tagger"].labels
    bert = bert_base_decode_share(train, texts[: args.bert_texts], labels)
    log(f"anchor: pretrained BERT-base + CRF, published {PUBLISHED_BERT_CRF[0]}-{PUBLISHED_BERT_CRF[1]} "
        f"dev F1; from scratch here {100 * last['dev_f1']:.1f} in {last['train_s']:.0f} s")

    figures = {
        "bench": "tagger_cluener",
        "quick": args.quick,
        **by_lexicon,
        "lexicon_words": {name: len(lex or ()) for name, lex in lexicons.items()},
        "train_s": last["train_s"],
        "sent_per_s": speed["sent_per_s"],
        "sent_per_s_jieba_lexicon": speed_lexicon["sent_per_s"],
        "decode_share": round(speed["decode_share"], 5),
        "score_share": round(speed["score_share"], 5),
        **bert,
        "budgets": [{k: v for k, v in run.items() if k != "tagger"} for run in runs],
        "model": {"layers": args.layers, "hidden": args.hidden, "dropout": args.dropout,
                  "max_len": args.max_len,
                  "batch_size": args.batch_size, "lr": args.lr, "threads": torch.get_num_threads(),
                  "word_dim": args.word_dim, "word_dropout": args.word_dropout, "ema": args.ema,
                  "lstm": args.lstm},
        "train_sentences": len(train),
        "dev_sentences": len(dev),
        "published_bert_crf_dev_f1": list(PUBLISHED_BERT_CRF),
    }
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
