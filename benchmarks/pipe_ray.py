"""Local pipe vs pipe on Ray (segment + a small tagger): the pipe half of benchmarks/distributed.py.

``pipe_local_vs_ray(corpus, settings, work)`` gives ``pipe_local_s``, ``pipe_ray_s`` (Ray start-up
included when Ray is started here; ``ray_start_s`` apart), ``pipe_identical`` (same records once
``source`` is dropped; span scores to 1e-5, since a tagger batch's padding moves the encoder's last
float bits) and ``pipe_exact`` (byte-equal records). Run alone (``--quick``: a random-weight tagger
on a few thousand lines) it prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def _same(ours: list[dict], theirs: list[dict]) -> bool:
    def plain(rec: dict) -> dict:
        return {**rec, "spans": [{**s, "score": None} for s in rec.get("spans", [])]}

    if len(ours) != len(theirs) or any(plain(a) != plain(b) for a, b in zip(ours, theirs)):
        return False
    return all(abs(s["score"] - t["score"]) <= 1e-5 for a, b in zip(ours, theirs)
               for s, t in zip(a.get("spans", []), b.get("spans", [])))


def pipe_local_vs_ray(corpus: Path, settings: dict[str, Any], work: Path,
                      workers: int | None = None, address: str = "local") -> dict[str, Any]:
    """Time ``Pipeline(settings)`` over ``corpus`` locally and on Ray (see the module's doc)."""
    from zhtext.distributed.pipe import run_on_ray
    from zhtext.pipeline import Pipeline
    from zhtext.pipeline.parts import read_part

    steps = list(settings)
    begin = time.perf_counter()
    Pipeline(steps, **settings).run(corpus, work / "local.jsonl")  # models loaded inside the time
    local_s = time.perf_counter() - begin
    begin = time.perf_counter()
    report = run_on_ray(Pipeline.settings_of(steps, **settings), [str(corpus)], work / "ray",
                        address=address, workers=workers)
    ray_s = time.perf_counter() - begin
    local = [json.loads(line) for line in (work / "local.jsonl").read_text().splitlines()]
    parts = sorted(p for p in os.listdir(work / "ray") if p.startswith("part-"))
    ours = [{k: v for k, v in r.items() if k != "source"}
            for p in parts for r in read_part(work / "ray" / p)]
    return {"pipe_local_s": round(local_s, 2), "pipe_ray_s": round(ray_s, 2),
            "ray_start_s": round(report.startup_s, 2), "pipe_parts": report.parts,
            "pipe_identical": _same(ours, local), "pipe_exact": ours == local}


def random_tagger(directory: Path, lines: list[str]) -> None:
    """Save a random-weight BIOES tagger (2 layers, 64 wide) over the characters of ``lines``: its
    speed is a trained one's."""
    import torch
    from transformers import AutoModel

    from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
    from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names

    vocab = build_char_vocab(lines)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(small_bert_config(len(vocab), layers=2, hidden=64, heads=2,
                                                      max_position=128))
    model = TaggerModel(encoder, tag_names(["PER", "LOC"], "BIOES"), "BIOES", dropout=0.0)
    Tagger(model, char_tokenizer(vocab), ["PER", "LOC"], "BIOES", 128).save(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    lines = (root / "data" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    lines = lines[:2000] if args.quick else lines * 5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        random_tagger(work / "tagger", lines)
        settings = {"segment": {}, "tag": {"model": str(work / "tagger")}}
        figures = pipe_local_vs_ray(work / "corpus.txt", settings, work, args.workers)
    print(json.dumps({"bench": "pipe_ray", "lines": len(lines), **figures}))


if __name__ == "__main__":
    main()
