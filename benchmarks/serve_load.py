"""``zhtext serve`` under load: requests per second and latency, batching on and off.

Usage: python benchmarks/serve_load.py [--quick] [--requests N]

A small tagger (BERT+CRF, 2 layers, 128 wide by default: --layers, --hidden; random weights: the
speed is the same as trained) and an encoder of the same size are built here and served by ``zhtext serve`` on a free local
port, once with dynamic batching (``--max-batch 64 --max-wait-ms 5``) and once without
(``--max-batch 1``: each request is its own model call). Clients in this process (asyncio, a
connection each, HTTP/1.1 written by hand to keep the load generator's CPU small) send one
sentence per request, each client waiting for its answer before the next, at 1, 8 and
32 clients at once; every answer is checked against the Python API's for the same sentence.
The Python API called in a loop, one sentence a call, is the baseline without HTTP. Torch runs
on ``--threads`` threads (default 1) in the server and in the loop alike: on a small shared
machine more threads than free cores make each call many times slower (measured here: 4 ms a
tagger call on one thread, 50 ms on two with the other core busy).

The last line is one JSON object: ``{"bench": "serve_load", "rps": {model: {"on": {clients: rps},
"off": {...}, "python_loop": rps}}, "p50_ms": {...}, "p99_ms": {...}, "batching_speedup": {model:
rps on / rps off at 32 clients}, "p99_over_single": {model: p99 at 32 clients (batching on) /
median latency of one client alone}, "answers_checked"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_json, log

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CLIENTS = (1, 8, 32)
CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理世车"
MODELS = ("tag", "embed")


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(12, 48))) for _ in range(n)]


def build_models(root: Path, texts: list[str], layers: int = 2, hidden: int = 128
                 ) -> dict[str, Path]:
    import torch
    from transformers import AutoModel, BertModel

    from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
    from zhtext.tasks.tagger import Tagger, TaggerModel, tag_names

    vocab = build_char_vocab(texts)
    torch.manual_seed(0)
    config = small_bert_config(len(vocab), layers=layers, hidden=hidden, heads=max(2, hidden // 64),
                               max_position=64)
    labels = ["PER", "LOC", "ORG"]
    net = TaggerModel(AutoModel.from_config(config), tag_names(labels, "BIOES"), "BIOES", dropout=0.0)
    with torch.no_grad():
        net.emit.weight.mul_(20)  # spans come out, as from a trained tagger
    Tagger(net, char_tokenizer(vocab), labels, "BIOES", 64).save(root / "tagger")
    char_tokenizer(vocab, root / "encoder")
    BertModel(config).save_pretrained(root / "encoder")
    return {"tag": root / "tagger", "embed": root / "encoder"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(models: dict[str, Path], threads: int, *extra: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "zhtext", "serve", "--model-tag", str(models["tag"]),
           "--model-embed", str(models["embed"]), "--port", str(port), "-q", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server ended: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str,
               body: bytes) -> bytes:
    """One request on a kept-alive connection, HTTP/1.1 by hand: the load generator shares the 2
    cores with the server, and httpx spent ~3 ms of CPU a request here (a whole core at 325
    requests/s), wrk-style clients a fraction of that."""
    writer.write(b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                 b"content-length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    data = await reader.readexactly(length)
    if head[9:12] != b"200":
        raise SystemExit(f"{path}: {head[9:12].decode()} {data[:200]!r}")
    return data


async def load(url: str, model: str, texts: list[str], clients: int) -> tuple[float, list[float], list]:
    """Wall seconds, latencies and answers of ``texts`` sent by ``clients`` clients at once, each
    on a connection of its own, as separate clients are."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    bodies = [json.dumps({"text": text}, ensure_ascii=False).encode() for text in texts]
    latencies: list[float] = [0.0] * len(texts)
    answers: list = [None] * len(texts)
    next_text = iter(range(len(texts)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        await post(reader, writer, f"/{model}", bodies[0])  # the connection, first-call costs
        connected.append(1)
        await ready.wait()
        for i in next_text:
            begin = time.perf_counter()
            data = await post(reader, writer, f"/{model}", bodies[i])
            latencies[i] = time.perf_counter() - begin
            answers[i] = data
        writer.close()

    ready, connected = asyncio.Event(), []
    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    while len(connected) < clients:
        await asyncio.sleep(0.01)
    begin = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - begin
    return wall, latencies, [json.loads(a) for a in answers]


def check(model: str, answers: list, reference: list) -> None:
    for got, want in zip(answers, reference):
        if model == "tag":
            ok = [(s["start"], s["end"], s["label"]) for s in got["spans"]] == want
        else:
            ok = np.allclose(got["vector"], want, atol=1e-4)
        if not ok:
            raise SystemExit(f"{model}: an answer differs from the Python API's for {got['text']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="192 requests per measurement")
    parser.add_argument("--requests", type=int, default=None, help="requests per measurement (default 960)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--layers", type=int, default=2, help="encoder layers (default 2)")
    parser.add_argument("--hidden", type=int, default=128, help="encoder width (default 128)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n = args.requests or (192 if args.quick else 960)
    texts = sentences(n)

    from zhtext.tasks.embed import Embedder
    from zhtext.tasks.tagger import Tagger

    rps: dict = {m: {"on": {}, "off": {}} for m in MODELS}
    p50: dict = {m: {"on": {}, "off": {}} for m in MODELS}
    p99: dict = {m: {"on": {}, "off": {}} for m in MODELS}
    with tempfile.TemporaryDirectory(prefix="zhtext-serve-bench-") as tmp:
        models = build_models(Path(tmp), texts, args.layers, args.hidden)
        api = {"tag": Tagger.load(models["tag"]), "embed": Embedder.load(models["embed"])}
        reference = {"tag": [[(s.start, s.end, s.label) for s in spans] for spans in api["tag"](texts)],
                     "embed": api["embed"](texts)}
        for model in MODELS:  # the Python API in a loop, one sentence a call
            api[model](texts[0])
            begin = time.perf_counter()
            for text in texts:
                api[model](text)
            rps[model]["python_loop"] = round(n / (time.perf_counter() - begin), 1)
        del api
        for mode, extra in (("off", ["--max-batch", "1"]), ("on", ["--max-batch", "64", "--max-wait-ms", "5"])):
            proc, url = start_server(models, args.threads, *extra)
            try:
                for model in MODELS:
                    for clients in CLIENTS:
                        wall, latencies, answers = asyncio.run(load(url, model, texts, clients))
                        check(model, answers, reference[model])
                        ms = np.array(latencies) * 1000
                        rps[model][mode][clients] = round(n / wall, 1)
                        p50[model][mode][clients] = round(float(np.percentile(ms, 50)), 2)
                        p99[model][mode][clients] = round(float(np.percentile(ms, 99)), 2)
                        log(f"{model} batching {mode}, {clients:2d} clients: {n / wall:7.1f} req/s, "
                            f"p50 {p50[model][mode][clients]:7.2f} ms, p99 {p99[model][mode][clients]:7.2f} ms")
                import httpx

                stats = httpx.get(url + "/models", timeout=10).json()
                for model in MODELS:
                    log(f"{model} batching {mode}: {stats['models'][model]['stats']}")
            finally:
                stop_server(proc)
    top = CLIENTS[-1]
    emit_json({
        "bench": "serve_load",
        "requests": n,
        "threads": args.threads,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "batching_speedup": {m: round(rps[m]["on"][top] / rps[m]["off"][top], 2) for m in MODELS},
        "p99_over_single": {m: round(p99[m]["on"][top] / p50[m]["off"][1], 2) for m in MODELS},
        "answers_checked": True,
    })


if __name__ == "__main__":
    main()
