"""Discover and pipe on Ray against the same jobs run locally, on one machine.

The corpus is the four classical novels of ../shared/data/raw repeated to the size asked (the
generated corpus of data/ when they are absent), in a temporary file. Each measurement runs in a
fresh child process, so its peak memory is its own:

- discover: local (threads), then Ray with 1 and 2 workers, in one child that starts a local Ray
  once and warms its workers on data/corpus.txt (reported apart, as `ray_start_s` and
  `ray_warmup_s`). Peak memory per process: the driver's, and the largest private resident
  memory of any Ray worker process (sampled from /proc; the object store's shared pages aside).
  `discover_identical`: the same words, counts and bits per character.
- pipe: `segment` plus a small random-weight tagger (benchmarks/pipe_ray.py) over the first 5 MB
  of the corpus (1 MB with --quick; a tagger on 2 cores is far slower than discovery), locally
  and on Ray with 2 workers; `pipe_identical`: the same records in the same order, `source`
  aside (span scores to 1e-5: the tagger's batch padding moves the last float bits);
  `pipe_ray_vs_local`: Ray's time less its start-up, over local's.
- the scale estimate: discover's time at 1 and 2 workers fitted to t(W) = a + b / W (Amdahl: b is
  the work that spreads over workers, a the rest: reading plans, the driver's re-estimation on
  its sample, the merges), then t(8) and t(64). It ignores the network (here everything is on one
  machine) and the merge tree's depth (log2 W merges), so it is a floor, not a promise; and on a
  2-core machine a second worker shares the cores with the driver, so `b` is understated.

    python benchmarks/distributed.py [--quick] [--mb 100] [--gb]   # --gb: also Ray on 1 GB

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA_DIR, emit_json, write_corpus

MB = 1_000_000
ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class WorkerMemory:
    """The largest private resident memory (RssAnon: not the object store's shared pages, which
    every reader maps) of any Ray worker process on this machine, sampled every 0.1 s."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                        continue
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("RssAnon:"):
                            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
                except OSError:
                    continue


def _fingerprint(lexicon) -> str:
    import hashlib

    items = sorted(lexicon.counts.items())
    return hashlib.sha256(repr((items, lexicon.bits_per_char)).encode()).hexdigest()


def child_discover(corpus: str, mode: str) -> dict:
    """One measurement, in this (child) process."""
    from zhtext.lexical.discover import Discoverer

    if mode == "local":
        begin = time.perf_counter()
        lexicon = Discoverer().run(corpus)
        return {"s": time.perf_counter() - begin, "peak_mb": _peak_mb(),
                "fingerprint": _fingerprint(lexicon), "words": len(lexicon.counts)}
    from zhtext.distributed.cluster import cluster
    from zhtext.distributed.discover import RayEngine

    workers = [int(w) for w in mode.split(":")[1].split(",")]
    out = {}
    with cluster("local", num_cpus=max(workers)) as running:
        out["ray_start_s"] = running.start_s
        # Warm the workers first (imports, Numba's cached kernels): paid once per worker process,
        # like the start-up, and reported with it rather than inside the first timed run.
        begin = time.perf_counter()
        Discoverer().run(str(ROOT / "data" / "corpus.txt"), engine=RayEngine(workers=max(workers)))
        out["ray_warmup_s"] = time.perf_counter() - begin
        with WorkerMemory() as memory:
            for w in workers:
                begin = time.perf_counter()
                lexicon = Discoverer().run(corpus, engine=RayEngine(workers=w))
                out[f"w{w}"] = {"s": time.perf_counter() - begin,
                                "fingerprint": _fingerprint(lexicon)}
        out["driver_peak_mb"] = _peak_mb()
        out["worker_peak_mb"] = memory.peak_mb
    return out


def child_pipe(corpus: str, mb: str) -> dict:
    """Local pipe vs pipe on Ray (2 workers) over the first ``mb`` MB of the corpus: segment and a
    small random-weight tagger (2 layers, 64 wide) built here."""
    from pipe_ray import pipe_local_vs_ray, random_tagger

    work = Path(corpus).parent / "pipe"
    work.mkdir()
    head = Path(corpus).read_bytes()[: int(float(mb) * MB)]
    text = head[: head.rfind(b"\n") + 1].decode("utf-8")
    (work / "corpus.txt").write_text(text, encoding="utf-8")
    random_tagger(work / "tagger", text.splitlines()[:20000])
    settings = {"segment": {}, "tag": {"model": str(work / "tagger")}}
    out = pipe_local_vs_ray(work / "corpus.txt", settings, work, workers=2)
    out["pipe_mb"] = len(head) / MB
    return out


def _child(*args: str, timeout: float = 3600) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _novels() -> list[bytes]:
    paths = sorted((DATA_DIR / "raw").glob("*.txt"))
    if paths:
        novels = [p.read_bytes() for p in paths]
    else:  # a fresh clone: the generated corpus shipped in data/
        novels = [(ROOT / "data" / "corpus.txt").read_bytes()]
        print("(no novels in ../shared/data/raw: using data/corpus.txt repeated)", file=sys.stderr)
    return [n if n.endswith(b"\n") else n + b"\n" for n in novels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 MB instead of 100")
    parser.add_argument("--mb", type=int, help="corpus size in MB (default 100)")
    parser.add_argument("--gb", action="store_true", help="also discover 1 GB on Ray (memory)")
    parser.add_argument("--pipe-mb", type=float, help="MB of the corpus piped (default 5; 1 quick)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = child_pipe if args.child[1] == "pipe" else child_discover
        print(json.dumps(run(args.child[0], *args.child[1 + (run is child_pipe):])))
        return
    size = args.mb or (20 if args.quick else 100)
    figures: dict = {"bench": "distributed", "mb": size, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="zhtext-dist-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        nbytes = write_corpus(corpus, _novels(), size * MB)
        local = _child(str(corpus), "local")
        ray = _child(str(corpus), "ray:1,2")
        figures.update({
            "discover_local_s": round(local["s"], 2),
            "discover_ray_s": round(ray["w2"]["s"], 2),
            "discover_ray_1worker_s": round(ray["w1"]["s"], 2),
            "discover_local_mb_s": round(nbytes / MB / local["s"], 2),
            "discover_ray_mb_s": round(nbytes / MB / ray["w2"]["s"], 2),
            "discover_ray_vs_local": round(ray["w2"]["s"] / local["s"], 2),
            "discover_identical": local["fingerprint"] == ray["w1"]["fingerprint"]
            == ray["w2"]["fingerprint"],
            "ray_start_s": round(ray["ray_start_s"], 2),
            "ray_warmup_s": round(ray["ray_warmup_s"], 2),
            "peak_mb": {"local": round(local["peak_mb"]), "ray_driver": round(ray["driver_peak_mb"]),
                        "ray_worker": round(ray["worker_peak_mb"])},
        })
        # Amdahl fit through the two measured points: t(W) = a + b / W.
        t1, t2 = ray["w1"]["s"], ray["w2"]["s"]
        b = max(0.0, 2 * (t1 - t2))
        a = t1 - b
        figures["discover_estimate_s"] = {str(w): round(max(a, 0.0) + b / w, 2) for w in (8, 64)}
        print(f"discover {nbytes / MB:.0f} MB: local {local['s']:.1f} s, Ray 1 worker "
              f"{t1:.1f} s, 2 workers {t2:.1f} s (start-up {ray['ray_start_s']:.1f} s apart); "
              f"identical {figures['discover_identical']}")
        pipe = _child(str(corpus), "pipe", str(args.pipe_mb or (1 if args.quick else 5)))
        figures.update({k: pipe[k] for k in ("pipe_local_s", "pipe_ray_s", "pipe_identical",
                                             "pipe_exact", "pipe_parts")})
        figures["pipe_mb"] = round(pipe["pipe_mb"], 2)
        figures["pipe_ray_start_s"] = pipe["ray_start_s"]
        # Ray's own start-up is reported apart, as for discover; the rest (worker start, model
        # loads, Ray Data's set-up) counts.
        figures["pipe_ray_vs_local"] = round((pipe["pipe_ray_s"] - pipe["ray_start_s"])
                                             / pipe["pipe_local_s"], 2)
        print(f"pipe {pipe['pipe_mb']:.1f} MB (segment + tagger): local {pipe['pipe_local_s']:.1f} s, "
              f"Ray 2 workers {pipe['pipe_ray_s']:.1f} s (start-up {pipe['ray_start_s']:.1f} s "
              f"within); identical {pipe['pipe_identical']}")
        if args.gb:
            corpus.unlink()
            gb = Path(tmp) / "gb.txt"
            nbytes = write_corpus(gb, _novels(), 1000 * MB)
            big = _child(str(gb), "ray:2")
            figures["gb"] = {"discover_ray_s": round(big["w2"]["s"], 2),
                             "ray_driver_peak_mb": round(big["driver_peak_mb"]),
                             "ray_worker_peak_mb": round(big["worker_peak_mb"])}
            print(f"discover 1 GB on Ray: {big['w2']['s']:.1f} s, driver peak "
                  f"{big['driver_peak_mb']:.0f} MB, largest worker peak {big['worker_peak_mb']:.0f} MB")
    emit_json(figures)


if __name__ == "__main__":
    main()
