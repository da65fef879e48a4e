"""``zhtext serve``: the models behind an HTTP API (FastAPI + uvicorn), with dynamic batching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zhtext.errors import ZhtextError

from .base import (
    DeviceOpt,
    EncodingOpt,
    QuantizeOpt,
    QuietOpt,
    StepSettingOpt,
    app,
    console,
    warnings_as_lines,
)


def _model_opt(step: str, what: str) -> object:
    return typer.Option(
        f"--model-{step}",
        help=f"Serve /{step}: {what} (the same as --set {step}.model=...).",
        show_default=False,
    )


@app.command("serve")
def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A 'zhtext pipe' TOML config: its steps are served with their settings "
            "(--save-config of 'zhtext pipe' writes one).",
        ),
    ] = None,
    model_tag: Annotated[str | None, _model_opt("tag", "a tagger folder or hub id")] = None,
    model_embed: Annotated[str | None, _model_opt("embed", "an encoder folder or hub id")] = None,
    model_title: Annotated[str | None, _model_opt("title", "a title model folder")] = None,
    model_generate: Annotated[
        str | None, _model_opt("generate", "a GPT-2 folder or hub id")
    ] = None,
    settings: StepSettingOpt = None,
    index: Annotated[
        str | None,
        typer.Option(
            "--index", help="Serve /similar over vectors written by 'zhtext embed -o FILE.npy'."
        ),
    ] = None,
    texts: Annotated[
        str | None,
        typer.Option(
            "--texts", help="The sentences the --index was made from, one per line, same order."
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Server processes, each with its own copy of the models."
        ),
    ] = 1,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch",
            min=1,
            help="Most texts gathered from concurrent requests into one model "
            "call (1: no batching).",
        ),
    ] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms",
            min=0,
            help="How long the oldest request waits for others to join its batch.",
        ),
    ] = 5.0,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue", min=1, help="Requests waiting per model; more are answered 429."
        ),
    ] = 1024,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="Largest request body in bytes (413 beyond).")
    ] = 1 << 20,
    max_texts: Annotated[
        int, typer.Option("--max-texts", min=1, help="Most texts in one request (413 beyond).")
    ] = 256,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=1, help="Most characters in one text (413 beyond).")
    ] = 20_000,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            "--shutdown-timeout",
            min=0,
            help="On SIGTERM, seconds the requests in flight get to finish.",
        ),
    ] = 30.0,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Serve the models over HTTP: POST /segment, /keywords, /tag, /title, /generate, /embed, /similar; GET /health, /models; the API's pages at /docs.

    A request is {"text": "..."} or {"text": [...]} with the options of the command of the same name; the answer is the record that command writes as JSON (a list for a list). Concurrent requests to one model are run together in one batch (--max-batch, --max-wait-ms). SIGTERM or Ctrl-C lets the requests in flight finish, then stops.

    Examples:

        zhtext serve --model-tag ner-model --model-embed my-embedder --port 8000

        zhtext serve --config news.toml --index corpus.npy --texts corpus.txt

        curl -s localhost:8000/tag -d '{"text": "浙商银行企业信贷部叶老桂博士"}'
    """
    from zhtext.pipeline import parse_assignments
    from zhtext.pipeline.resolve import resolve
    from zhtext.serving.app import serve as run_server
    from zhtext.serving.models import serve_settings

    if (index is None) != (texts is None):
        raise ZhtextError(
            "--index and --texts go together: the vectors and the sentences they were made from"
        )
    given = parse_assignments(settings or [])
    for step, model in {
        "tag": model_tag,
        "embed": model_embed,
        "title": model_title,
        "generate": model_generate,
    }.items():
        if model is not None:
            given.setdefault(step, {})["model"] = model
    if device is not None:
        given["device"] = device
    if quantize is not None:
        given["quantize"] = quantize.value
    pipeline = serve_settings(config, given)
    with warnings_as_lines():
        resolve(
            pipeline["steps"], {k: v for k, v in pipeline.items() if k != "steps"}
        )  # fails before loading
    spec = {
        "settings": pipeline,
        "index": index,
        "texts": texts,
        "encoding": encoding,
        "limits": {"max_body_bytes": max_body, "max_texts": max_texts, "max_chars": max_chars},
        "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue": max_queue},
    }

    def ready(url: str) -> None:
        if not quiet:
            console.print(
                f"[dim]serving {', '.join(pipeline['steps'])}{', similar' if index else ''} "
                f"on {url} (API pages: {url}/docs)[/]",
                highlight=False,
            )

    with warnings_as_lines():
        run_server(
            spec, host, port, workers, "warning" if quiet else "info", shutdown_timeout, ready
        )
