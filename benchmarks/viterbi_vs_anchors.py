"""Numba Viterbi (zhtext.labels.viterbi) against pytorch-crf's CRF.decode and a vectorised torch Viterbi.

Same inputs for all three: B sequences of L tokens (full length by default, every sequence L long),
standard-normal float32 emissions, transitions, start and end scores copied into every decoder.
Paths must be identical; times are medians over repeats after a warm-up. A second, random-length
batch checks that all three agree under masking too (not timed).

    pip install 'zhtext[bench]'          # pytorch-crf
    python benchmarks/viterbi_vs_anchors.py [--quick]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numba
import numpy as np
import torch

from zhtext.labels.viterbi import viterbi_decode

try:
    from torchcrf import CRF as TorchCRF
except ImportError:  # pragma: no cover - the anchor is a benchmark-only dependency
    raise SystemExit("pytorch-crf is needed: pip install 'zhtext[bench]' (or pip install pytorch-crf)")


def torch_viterbi(
    emissions: torch.Tensor,
    mask: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Viterbi batched over B with a Python loop over L, back-tracking vectorised too.

    Returns ``long [B, L]`` paths, -1 beyond each length. Arithmetic order matches the other
    decoders: ``(score[i] + A[i, j]) + E[t, j]``.
    """
    n_batch, max_len, _ = emissions.shape
    score = start + emissions[:, 0]
    history = torch.empty((max_len, n_batch, emissions.shape[2]), dtype=torch.long)
    for t in range(1, max_len):
        step, history[t] = (score.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1)).max(dim=1)
        score = torch.where(mask[:, t, None], step, score)
    score = score + end
    lengths = mask.sum(1)
    tag = score.argmax(dim=1)
    paths = torch.full((n_batch, max_len), -1, dtype=torch.long)
    rows = torch.arange(n_batch)
    for t in range(max_len - 1, -1, -1):
        # Walking back, a sequence shorter than t+1 holds its final tag until its last token.
        live = t < lengths
        paths[:, t] = torch.where(live, tag, paths[:, t])
        if t > 0:
            tag = torch.where(live, history[t, rows, tag], tag)
    return paths


def cold_compile_seconds() -> float:
    """Seconds of the first viterbi_decode call in a fresh process with an empty Numba cache."""
    code = (
        "import time, numpy as np\n"
        "from zhtext.labels.viterbi import viterbi_decode\n"
        "begin = time.perf_counter()\n"
        "viterbi_decode(np.zeros((2, 3, 4), np.float32), [3, 1], np.zeros((4, 4)), np.zeros(4), np.zeros(4))\n"
        "print(time.perf_counter() - begin)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def median_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, after a warm-up, taking turns so load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            begin = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - begin)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def make_inputs(rng: np.random.Generator, n_batch: int, max_len: int, n_tags: int, full: bool):
    emissions = rng.standard_normal((n_batch, max_len, n_tags)).astype(np.float32)
    lengths = np.full(n_batch, max_len) if full else rng.integers(1, max_len + 1, n_batch)
    params = [rng.standard_normal(shape).astype(np.float32) for shape in ((n_tags, n_tags), (n_tags,), (n_tags,))]
    return emissions, lengths, params


def run_all(emissions, lengths, params):
    """The three decoders on one input: callables and a check that their paths are identical."""
    transitions, start, end = params
    n_batch, max_len, n_tags = emissions.shape
    em_t = torch.from_numpy(emissions)
    mask = torch.arange(max_len)[None, :] < torch.from_numpy(lengths)[:, None]
    anchor = TorchCRF(n_tags, batch_first=True)
    with torch.no_grad():
        anchor.transitions.copy_(torch.from_numpy(transitions))
        anchor.start_transitions.copy_(torch.from_numpy(start))
        anchor.end_transitions.copy_(torch.from_numpy(end))
    tr_t, st_t, en_t = (torch.from_numpy(p) for p in params)

    def ours():
        return viterbi_decode(emissions, lengths, transitions, start, end)

    def pytorch_crf():
        with torch.no_grad():
            return anchor.decode(em_t, mask)

    def vectorised():
        with torch.no_grad():
            return torch_viterbi(em_t, mask, tr_t, st_t, en_t)

    paths, _ = ours()
    ref = np.full((n_batch, max_len), -1, dtype=np.int64)
    for b, tags in enumerate(pytorch_crf()):
        ref[b, : len(tags)] = tags
    identical = bool((paths == ref).all() and (vectorised().numpy() == ref).all())
    return {"numba": ours, "pytorch_crf": pytorch_crf, "vectorised": vectorised}, identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke run)")
    parser.add_argument("--batch", type=int, default=256, help="sequences per batch (default 256)")
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--threads", type=int, default=0, help="threads for torch and Numba alike (default: each library's own)"
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else 21
    rng = np.random.default_rng(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        # zhtext's Viterbi runs big batches on NUMBA_NUM_THREADS threads of its own (it has no
        # Numba parallel kernel, so numba.set_num_threads does not reach it).
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
        numba.config.reload_config()

    compile_s = cold_compile_seconds()
    print(f"first call with an empty Numba cache (compile): {compile_s:.2f} s")
    print(
        f"B={args.batch} L={args.length} (every sequence full length), "
        f"threads: torch {torch.get_num_threads()}, numba {numba.get_num_threads()}"
    )

    identical = True
    ms: dict[str, dict[str, float]] = {}
    vs_crf: dict[str, float] = {}
    vs_vec: dict[str, float] = {}
    print(f"{'K':>3} {'numba ms':>9} {'pytorch-crf ms':>15} {'vectorised ms':>14} {'x pytorch-crf':>14} {'x vectorised':>13} identical")
    for n_tags in (4, 9, 21):
        # Masking check on random lengths, then the timed full-length batch.
        _, same_masked = run_all(*make_inputs(rng, args.batch, args.length, n_tags, full=False))
        fns, same_full = run_all(*make_inputs(rng, args.batch, args.length, n_tags, full=True))
        same = same_masked and same_full
        identical &= same
        times = median_ms(fns, repeats)
        key = str(n_tags)
        ms[key] = {name: round(value, 3) for name, value in times.items()}
        vs_crf[key] = round(times["pytorch_crf"] / times["numba"], 1)
        vs_vec[key] = round(times["vectorised"] / times["numba"], 1)
        print(
            f"{n_tags:>3} {times['numba']:>9.3f} {times['pytorch_crf']:>15.2f} {times['vectorised']:>14.2f}"
            f" {vs_crf[key]:>14.1f} {vs_vec[key]:>13.1f} {same}"
        )

    print(
        json.dumps(
            {
                "bench": "viterbi_vs_anchors",
                "speedup_vs_pytorch_crf": vs_crf,
                "speedup_vs_vectorised": vs_vec,
                "identical": identical,
                "ms": ms,
                "compile_s": round(compile_s, 2),
                "batch": args.batch,
                "length": args.length,
                "lengths": "full",
                "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
            }
        )
    )


if __name__ == "__main__":
    main()
