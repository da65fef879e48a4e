"""``zhtext serve``: a real uvicorn server on a free local port, queried with httpx.

Every endpoint answers what the Python API gives; concurrent requests are batched and each gets
its own answer; bad requests get a 4xx ``{"error"}`` and leave the server up; a client leaving a
stream frees the model; SIGTERM lets the requests in flight finish."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from zhtext.lexical.keywords import KeywordExtractor
from zhtext.lexical.segment import Segmenter
from zhtext.neural.scratch import build_char_vocab, char_tokenizer, small_bert_config
from zhtext.serving.batching import Batcher
from zhtext.tasks.embed import Embedder
from zhtext.tasks.generate import TextGenerator
from zhtext.tasks.tagger import Tagger, TaggerModel, prediction_record, tag_names
from zhtext.tasks.title import TitleGenerator
from zhtext.tasks.vectors import cosine_top_k, save_index, vector_json

TEXTS = [
    "我爱北京天安门",
    "北京是中国的首都，上海是中国最大的城市",
    "好",
    "今天天气很好我们去公园散步吧他在公园里跑步",
    "天安门广场在北京市中心每天都有很多游客来看升旗",
    "李四说ab1",
    "中国",
]
LIMITS = ["--max-body", "65536", "--max-texts", "64", "--max-chars", "5000"]


@pytest.fixture(scope="module", autouse=True)
def one_thread(request):
    """Tiny models run fastest on one thread (the servers are started with one too)."""
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tagger, an encoder, a title model and a GPT-2, all tiny and random; an index of TEXTS."""
    from transformers import AutoModel, BertModel

    root = tmp_path_factory.mktemp("serve-models")
    vocab = build_char_vocab(TEXTS)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(
        small_bert_config(len(vocab), layers=1, hidden=16, heads=1, max_position=34)
    )
    model = TaggerModel(encoder, tag_names(["PER", "LOC"], "BIOES"), "BIOES", dropout=0.0)
    with torch.no_grad():
        for param in model.crf.parameters():
            param.add_(torch.randn_like(param))
        model.emit.weight.mul_(20)  # spread the emissions so that spans come out
    Tagger(model, char_tokenizer(vocab), ["PER", "LOC"], "BIOES", 34).save(root / "tagger")
    char_tokenizer(vocab, root / "encoder")
    BertModel(small_bert_config(len(vocab), layers=2, hidden=32, heads=4)).save_pretrained(
        root / "encoder"
    )
    TitleGenerator.from_scratch(TEXTS, layers=1, hidden=32, max_source_len=24, max_target_len=16,
                                dropout=0.0).save(root / "title")  # fmt: skip
    TextGenerator.from_scratch(TEXTS, layers=1, hidden=32, heads=2, block_size=64).save(
        root / "gpt"
    )
    (root / "corpus.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    embedder = Embedder.load(root / "encoder")
    save_index(root / "corpus.npy", embedder(TEXTS), embedder)
    return {
        name: root / name
        for name in ("tagger", "encoder", "title", "gpt", "corpus.npy", "corpus.txt")
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``zhtext serve ARGS`` in a child process on a free port; stopped by :meth:`stop`."""

    def __init__(self, *args: str | Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "zhtext", "serve", *map(str, args),
                   "--port", str(self.port), "-q"]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server ended: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def post(self, endpoint: str, **body) -> httpx.Response:
        return self.client.post(endpoint, json=body)

    def ok(self, endpoint: str, **body):
        res = self.post(endpoint, **body)
        assert res.status_code == 200, res.text
        return res.json()

    def stats(self, model: str) -> dict:
        return self.client.get("/models").json()["models"][model]["stats"]

    def stop(self) -> tuple[int, str]:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def server(models):
    """Every model, and /similar over the index; batches wait up to 50 ms for company."""
    srv = Server("--model-tag", models["tagger"], "--model-embed", models["encoder"],
                 "--model-title", models["title"], "--model-generate", models["gpt"],
                 "--index", models["corpus.npy"], "--texts", models["corpus.txt"],
                 "--max-wait-ms", "50", *LIMITS)  # fmt: skip
    yield srv
    code, err = srv.stop()
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err


@pytest.fixture(scope="module")
def api(models) -> dict:
    """The same models through the Python API."""
    return {
        "tagger": Tagger.load(models["tagger"]),
        "embedder": Embedder.load(models["encoder"]),
        "title": TitleGenerator.load(models["title"]),
        "gpt": TextGenerator.load(models["gpt"]),
    }


# --------------------------------------------------------------------------- equal to the Python API


def test_segment_and_keywords_equal_the_python_api(server):
    segmenter = Segmenter()
    assert server.ok("/segment", text=TEXTS[1]) == {
        "text": TEXTS[1],
        "tokens": segmenter.cut(TEXTS[1]),
    }
    assert server.ok("/segment", text=TEXTS) == [
        {"text": t, "tokens": w} for t, w in zip(TEXTS, segmenter.cut_lines(TEXTS))
    ]
    got = server.ok("/segment", text=TEXTS, mode="search", hmm=False)
    assert [r["tokens"] for r in got] == segmenter.cut_lines(TEXTS, mode="search", hmm=False)
    got = server.ok("/segment", text=TEXTS, pos=True)
    assert [r["tokens"] for r in got] == [[list(p) for p in s] for s in segmenter.tag_lines(TEXTS)]
    got = server.ok("/segment", text=TEXTS[3], offsets=True)
    assert got["tokens"] == [list(t) for t in segmenter.tokenize(TEXTS[3])]

    tfidf, textrank = KeywordExtractor("tfidf"), KeywordExtractor("textrank")
    assert server.ok("/keywords", text=TEXTS[1], top=3) == {
        "text": TEXTS[1],
        "keywords": tfidf(TEXTS[1], 3),
    }
    got = server.ok("/keywords", text=TEXTS, method="textrank", with_weight=True)
    assert [r["keywords"] for r in got] == [
        [list(kw) for kw in textrank(t, 20, True)] for t in TEXTS
    ]


def test_tag_equals_the_python_api_and_the_cli(server, api, models, tmp_path, monkeypatch, capsys):
    tagger = api["tagger"]
    one = server.post("/tag", text=TEXTS[0])
    assert one.text == prediction_record(TEXTS[0], tagger.nbest([TEXTS[0]], 1)[0])  # byte for byte
    assert server.ok("/tag", text=TEXTS) == [
        json.loads(prediction_record(t, c)) for t, c in zip(TEXTS, tagger.nbest(TEXTS, 1))
    ]
    got = server.ok("/tag", text=TEXTS[3], n_best=3)
    assert got == json.loads(prediction_record(TEXTS[3], tagger.nbest([TEXTS[3]], 3)[0]))
    assert len(got["nbest"]) == 3
    # the records of `zhtext tag`, field for field
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    code, out, err = run_cli(
        monkeypatch, capsys, "tag", str(tmp_path / "in.txt"), "-m", str(models["tagger"])
    )
    assert code == 0, err
    assert server.ok("/tag", text=TEXTS) == [json.loads(line) for line in out.splitlines()]


def test_title_and_generate_equal_the_python_api(server, api):
    title, gpt = api["title"], api["gpt"]
    # the server's defaults are the pipeline step's: titles beam 3, 32 tokens; generation 64, seed 0
    assert server.ok("/title", text=TEXTS[1]) == {
        "content": TEXTS[1],
        "title": title.predict([TEXTS[1]], beam=3)[0],
    }
    got = server.ok("/title", text=TEXTS, beam=2, max_new_tokens=5)
    assert got == [
        {"content": t, "title": h}
        for t, h in zip(TEXTS, title.predict(TEXTS, beam=2, max_new_tokens=5))
    ]

    assert server.ok("/generate", text=TEXTS[0]) == {
        "index": 0,
        "prompt": TEXTS[0],
        "sample": 0,
        "text": gpt.predict([TEXTS[0]], max_new_tokens=64, seed=0)[0],
    }
    got = server.ok("/generate", text=TEXTS[:3], num=2, seed=7, max_new_tokens=12, top_k=5)
    want = gpt.generate(TEXTS[:3], max_new_tokens=12, seed=7, top_k=5, num_return=2)
    assert got == [
        {"index": i, "prompt": TEXTS[i], "sample": n, "text": want[i][n]}
        for i in range(3)
        for n in range(2)
    ]
    greedy = server.ok("/generate", text=TEXTS[1], sample=False, max_new_tokens=20)
    assert greedy["text"] == gpt.predict([TEXTS[1]], sample=False, max_new_tokens=20)[0]


def test_generate_streams_the_same_text(server, api):
    with server.client.stream(
        "POST",
        "/generate",
        json={"text": TEXTS[:2], "stream": True, "num": 2, "max_new_tokens": 16, "seed": 3},
    ) as res:
        assert res.status_code == 200 and res.headers["content-type"].startswith(
            "application/x-ndjson"
        )
        pieces = [json.loads(line) for line in res.iter_lines() if line]
    assert len(pieces) > 8  # piece by piece, not whole texts
    joined: dict[tuple[int, int], str] = {}
    for piece in pieces:
        key = (piece["index"], piece["sample"])
        assert not (key in joined and joined.get(("last",) + key)), "a piece after the last"
        joined[key] = joined.get(key, "") + piece["text"]
        if piece["last"]:
            joined[("last",) + key] = "yes"
    want = api["gpt"].generate(TEXTS[:2], max_new_tokens=16, seed=3, num_return=2)
    assert {k: v for k, v in joined.items() if len(k) == 2} == {
        (i, n): want[i][n] for i in range(2) for n in range(2)
    }


def test_embed_and_similar_equal_the_python_api(server, api, models):
    embedder = api["embedder"]
    one = server.post("/embed", text=TEXTS[0])
    text = json.dumps(TEXTS[0], ensure_ascii=False)
    assert one.text == f'{{"text": {text}, "vector": {vector_json(embedder(TEXTS[0]))}}}'  # exactly
    got = server.ok("/embed", text=TEXTS)
    assert [r["text"] for r in got] == TEXTS
    np.testing.assert_array_equal(
        np.array([r["vector"] for r in got], dtype=np.float32), embedder(TEXTS)
    )

    queries = ["北京天安门", "上海的城市"]
    rows, scores = cosine_top_k(np.load(models["corpus.npy"]), embedder(queries), 3)
    got = server.ok("/similar", text=queries, k=3)
    assert got == [
        {
            "query": q,
            "hits": [
                {
                    "rank": r + 1,
                    "score": float(scores[i][r]),
                    "text": TEXTS[rows[i][r]],
                    "row": int(rows[i][r]),
                }
                for r in range(3)
            ],
        }
        for i, q in enumerate(queries)
    ]
    assert (
        server.ok("/similar", text=TEXTS[4], k=1)["hits"][0]["text"] == TEXTS[4]
    )  # itself, nearest


def test_health_models_and_the_openapi_page(server, models):
    health = server.client.get("/health").json()
    assert health["status"] == "ok"
    assert set(health["models"]) == {"segment", "tag", "embed", "title", "generate", "similar"}
    listing = server.client.get("/models").json()
    assert listing["models"]["tag"]["settings"]["model"] == str(models["tagger"])
    assert listing["models"]["similar"]["settings"]["rows"] == len(TEXTS)
    assert listing["models"]["segment"]["endpoints"] == ["/segment", "/keywords"]
    assert listing["serving"]["max_texts"] == 64 and listing["serving"]["max_wait_ms"] == 50
    schema = server.client.get("/openapi.json").json()
    for path in ("/segment", "/keywords", "/tag", "/title", "/generate", "/embed", "/similar"):
        assert "post" in schema["paths"][path]
    assert "n_best" in json.dumps(schema["components"])
    assert server.client.get("/docs").status_code == 200


# --------------------------------------------------------------------------- batching


def test_fifty_concurrent_requests_are_batched_and_each_answered(server, api):
    tagger, embedder = api["tagger"], api["embedder"]
    texts = [TEXTS[i % len(TEXTS)] + "北京" * (i % 5) for i in range(50)]
    before = server.stats("tag")

    async def ask() -> list:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=60)
        ) as client:
            calls = [
                client.post("/tag" if i % 2 == 0 else "/embed", json={"text": t})
                for i, t in enumerate(texts)
            ]
            return await asyncio.gather(*calls)

    answers = asyncio.run(ask())
    assert all(res.status_code == 200 for res in answers)
    for i, (text, res) in enumerate(zip(texts, answers)):
        got = res.json()
        assert got["text"] == text  # its own answer
        if i % 2 == 0:
            want = json.loads(prediction_record(text, tagger.nbest([text], 1)[0]))["spans"]
            assert [{**s, "score": None} for s in got["spans"]] == [
                {**s, "score": None} for s in want
            ]
            np.testing.assert_allclose(
                [s["score"] for s in got["spans"]], [s["score"] for s in want], atol=1e-5
            )
        else:
            np.testing.assert_allclose(got["vector"], embedder(text), atol=1e-5)
    after = server.stats("tag")
    assert (
        after["requests"] - before["requests"] == 25
        and after["received"] - before["received"] == 25
    )
    assert after["batches"] - before["batches"] < 25  # requests shared model calls
    assert after["largest"] > 1 and after["shared"] > before["shared"]
    assert server.stats("embed")["largest"] > 1


def test_a_lone_request_does_not_wait_for_company():
    # A minute of max_wait would time this out if a request alone at an idle worker waited for
    # others; it waits only once batches are being shared.
    batcher = Batcher("test", max_batch=8, max_wait_ms=60_000)

    async def go():
        for text in ("a", "b", "c"):  # one after another, as a single client sends them
            answer = await asyncio.wait_for(
                batcher.submit(("k",), [text], None, lambda t, o: t, lambda t, r, o: r), 20
            )
            assert answer == [text]

    try:
        asyncio.run(go())
        assert batcher.stats.batches == 3 and batcher.stats.largest == 1
    finally:
        batcher.close(5)


def test_a_batcher_keeps_options_apart_and_survives_a_failing_batch():
    calls = []

    def run(texts, options):
        calls.append((list(texts), options))
        if "boom" in texts:
            raise ValueError("boom")
        return [f"{t}:{options}" for t in texts]

    def render(texts, results, options):
        return results

    held = threading.Event()

    def hold(texts, options):  # keeps the worker busy while the others queue
        held.wait(10)
        return texts

    batcher = Batcher("test", max_batch=8, max_wait_ms=200)

    async def go():
        held.clear()
        first = asyncio.ensure_future(batcher.submit(("h",), ["h"], 0, hold, render))
        while batcher.running == 0:  # the worker has taken it
            await asyncio.sleep(0.001)
        jobs = [
            batcher.submit(("e", o), [t], o, run, render)
            for t, o in [("a", 1), ("b", 2), ("c", 1), ("d", 1), ("boom", 3), ("e", 3)]
        ]
        futures = [asyncio.ensure_future(job) for job in jobs]
        while batcher.queued < len(jobs):
            await asyncio.sleep(0.001)
        held.set()
        assert await first == ["h"]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        answers = asyncio.run(go())
        assert answers[:4] == [["a:1"], ["b:2"], ["c:1"], ["d:1"]]
        assert isinstance(answers[4], ValueError) and isinstance(
            answers[5], ValueError
        )  # its batch's
        assert sorted((options, texts) for texts, options in calls) == [
            (1, ["a", "c", "d"]),
            (2, ["b"]),
            (3, ["boom", "e"]),
        ]  # one batch per options
        calls.clear()
        assert asyncio.run(go())[0] == ["a:1"]  # the worker lives on
        assert batcher.stats.requests == 14 and batcher.stats.errors == 4
    finally:
        batcher.close(5)


# --------------------------------------------------------------------------- bad requests


def test_bad_requests_get_a_4xx_json_error_and_the_server_stays_up(server):
    def refused(status: int, fragment: str, res: httpx.Response) -> None:
        assert res.status_code == status, res.text
        assert res.headers["content-type"].startswith("application/json")
        message = res.json()["error"]
        assert fragment in message and "\n" not in message, message

    post = server.client.post
    refused(413, "over 65,536 bytes", post("/segment", json={"text": "好" * 40000}))
    refused(413, "65 texts", post("/segment", json={"text": ["好"] * 65}))
    refused(413, "5,001 characters", post("/tag", json={"text": ["好", "好" * 5001]}))
    refused(400, "invalid JSON", post("/tag", content=b'{"text": "x",'))
    refused(400, "invalid JSON", post("/tag", content=b"\xff\xfe"))
    refused(422, "text: must be a string or a list of strings", post("/tag", json={"text": 3}))
    refused(422, "text: must be a string", post("/tag", json={"text": ["a", 1]}))
    refused(422, "n_best", post("/tag", json={"text": "a", "n_best": "2"}))
    refused(422, "n_best", post("/tag", json={"text": "a", "n_best": 0}))
    refused(422, "colour: Extra inputs", post("/tag", json={"text": "a", "colour": "red"}))
    refused(422, "no texts", post("/tag", json={"text": []}))
    refused(422, "JSON object", post("/tag", content=b""))
    refused(422, "body", post("/tag", json=["a"]))
    refused(
        422,
        "min_new_tokens",
        post("/generate", json={"text": "a", "min_new_tokens": 9, "max_new_tokens": 2}),
    )
    refused(
        422,
        "beam search cannot be streamed",
        post("/generate", json={"text": "a", "beam": 2, "stream": True}),
    )
    refused(
        422,
        "sampling and beam search",
        post("/title", json={"text": "a", "beam": 2, "sample": True}),
    )
    refused(422, "full mode", post("/segment", json={"text": "a", "mode": "all", "offsets": True}))
    refused(422, "pos", post("/keywords", json={"text": "a", "pos": ["NR"]}))
    refused(404, "no such endpoint: POST /parse", post("/parse", json={"text": "a"}))
    refused(405, "GET is not allowed on /tag", server.client.get("/tag"))
    assert server.client.get("/health").json()["status"] == "ok"
    assert server.ok("/segment", text="中国")["tokens"] == ["中国"]


def test_a_client_leaving_a_stream_frees_the_model(server):
    dropped = server.stats("generate")["dropped"]
    # 64 prompts x 64 samples: a long while of work if the stream were not stopped
    body = {"text": [TEXTS[1]] * 64, "num": 64, "max_new_tokens": 60, "stream": True}
    with server.client.stream("POST", "/generate", json=body) as res:
        assert res.status_code == 200
        assert json.loads(next(res.iter_lines()))["index"] == 0
    deadline = time.monotonic() + 30
    while server.stats("generate")["dropped"] == dropped:
        assert time.monotonic() < deadline, "the stream kept the worker"
        time.sleep(0.1)
    begin = time.monotonic()
    assert server.ok("/generate", text="我", max_new_tokens=4)["prompt"] == "我"
    assert time.monotonic() - begin < 10


# --------------------------------------------------------------------------- stopping


def test_sigterm_finishes_the_requests_in_flight(models, api):
    srv = Server("--model-tag", models["tagger"], "--max-batch", "1")  # one request per model call
    try:
        # a model that is not loaded
        res = srv.post("/embed", text="a")
        assert res.status_code == 404 and "--model-embed" in res.json()["error"]
        texts = [TEXTS[3] * 60] * 32
        answers: list = [None] * 8

        def ask(i: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as client:
                answers[i] = client.post("/tag", json={"text": texts})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while srv.stats("tag")["received"] < 8:  # all eight are in the server
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert srv.stats("tag")["requests"] < 8  # and some still waiting
        srv.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(120)
        code, err = srv.stop()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    want = json.loads(prediction_record(texts[0], api["tagger"].nbest([texts[0]], 1)[0]))
    for res in answers:
        assert res is not None and res.status_code == 200, res
        got = res.json()
        assert len(got) == len(texts) and got[0]["text"] == want["text"]
        assert [s["label"] for s in got[-1]["spans"]] == [s["label"] for s in want["spans"]]
    assert code == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "zhtext: terminated"
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health", timeout=2)


def test_serve_refuses_bad_settings_in_one_line(models, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--index", str(models["corpus.npy"]))
    assert code == 1 and err.startswith("zhtext: error: --index and --texts go together"), err
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--set", "tag.colour=red")
    assert code == 1 and "unknown setting tag.colour" in err and len(err.splitlines()) == 1, err
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--model-tag", str(models["encoder"]),
                           "--port", str(free_port()), "-q")  # fmt: skip
    assert code == 1 and err.startswith("zhtext: error: ") and len(err.splitlines()) == 1, err
