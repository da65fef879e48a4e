"""``zhtext embed``, ``zhtext evaluate embed`` and ``zhtext similar``: sentence vectors and search."""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zhtext.errors import ZhtextError
from zhtext.io.writing import atomic_output
from zhtext.io.reading import iter_lines

from .base import DeviceOpt, EncodingOpt, QuietOpt, app, console, evaluate_app

if TYPE_CHECKING:
    import numpy as np

    from zhtext.tasks.embed import Embedder


class Pooling(str, Enum):
    cls = "cls"
    last_avg = "last-avg"
    first_last_avg = "first-last-avg"
    pooler = "pooler"


class Format(str, Enum):
    npy = "npy"
    jsonl = "jsonl"


# Options shared by the three commands.
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Encoder: a local save_pretrained directory or a Hugging Face hub id "
        "(e.g. bert-base-chinese).",
        show_default=False,
    ),
]
PoolingOpt = Annotated[
    Pooling,
    typer.Option(
        "--pooling",
        help="cls: the [CLS] vector; last-avg: mean of the last layer's tokens; first-last-avg: "
        "mean of the first and last layers' token means (BERT-whitening's choice); pooler: BERT's "
        "pooler output.",
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Sentences per forward pass.")]
MaxLenOpt = Annotated[
    int, typer.Option("--max-len", min=2, help="Longest input in tokens ([CLS] and [SEP] included).")
]


def _load_embedder(
    model: str,
    pooling: str,
    whitening: str | None,
    max_len: int,
    batch_size: int,
    device: str | None,
    quiet: bool,
) -> Embedder:
    from zhtext.tasks.embed import Embedder

    with console.status(f"loading {escape(model)}") if not quiet else contextlib.nullcontext():
        return Embedder(model, pooling, whitening, max_len=max_len, batch_size=batch_size, device=device)


def _warn_rank(embedder: Embedder) -> None:
    w = embedder.whitening
    if w is not None and w.output_dim > w.rank:
        console.print(
            f"[yellow]warning:[/] the whitening was fitted on {w.n:,} vectors and sees only "
            f"{w.rank} of {w.input_dim} directions; dimensions past {w.rank} carry no "
            f"information (use --dim {w.rank} or fit on more sentences)",
            highlight=False,
        )


def _write_jsonl(path: str | None, texts: list[str], vectors: np.ndarray) -> None:
    from zhtext.tasks.embed import vector_json

    with atomic_output(path) as out:
        for text, row in zip(texts, vectors):
            out.write(f'{{"text": {json.dumps(text, ensure_ascii=False)}, "vector": {vector_json(row)}}}\n')


@app.command()
def embed(
    model: ModelOpt,
    input_file: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="Sentences, one per line; '-' reads stdin.")
    ] = "-",
    pooling: PoolingOpt = Pooling.first_last_avg,
    whiten: Annotated[
        bool,
        typer.Option(
            "--whiten",
            help="Apply BERT-whitening (vectors then come L2-normalised). It is fitted on --fit-on, "
            "or on the input itself.",
        ),
    ] = False,
    dim: Annotated[
        int | None,
        typer.Option("--dim", min=1, help="Keep this many whitened dimensions (e.g. 256 or 128)."),
    ] = None,
    fit_on: Annotated[
        str | None,
        typer.Option(
            "--fit-on",
            help="Fit the whitening on these sentences (one per line, streamed; an STS file gives "
            "both sentences of each pair) instead of on the input.",
        ),
    ] = None,
    save_whitening: Annotated[
        str | None,
        typer.Option("--save-whitening", help="Save the fitted whitening (.npz) to apply later."),
    ] = None,
    whitening: Annotated[
        str | None,
        typer.Option("--whitening", help="Apply a whitening saved with --save-whitening (implies --whiten)."),
    ] = None,
    batch_size: BatchOpt = 64,
    max_len: MaxLenOpt = 256,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Where the vectors go. A .npy file gets a .json of settings beside it (and a "
            ".whitening.npz when whitened) for 'zhtext similar'. Default: stdout.",
        ),
    ] = None,
    fmt: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="npy (float32 matrix, one row per line) or jsonl ({\"text\", \"vector\"} per line). "
            "Default: jsonl for a .jsonl output or stdout, else npy.",
        ),
    ] = None,
    device: DeviceOpt = None,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Turn sentences into vectors, one per input line, float32.

    With --whiten the vectors are BERT-whitened: the mean of a corpus's vectors is removed and their covariance made the identity, which makes cosine similarity far more telling; --dim then keeps the strongest directions only. Fit once with --save-whitening, apply to new text with --whitening. A .npy output can then be searched with 'zhtext similar'.

    Examples:

        zhtext embed corpus.txt -m bert-base-chinese --whiten --dim 256 --save-whitening w.npz -o corpus.npy

        zhtext embed queries.txt -m bert-base-chinese --whitening w.npz --format jsonl
    """
    from zhtext.tasks.embed import read_fit_sentences, save_index

    if whitening and save_whitening:
        raise ZhtextError(
            "give --save-whitening (fit a new whitening) or --whitening (apply a saved one), not both"
        )
    if whitening and fit_on:
        raise ZhtextError("--fit-on fits a new whitening; it cannot be combined with --whitening")
    whiten = whiten or whitening is not None
    if not whiten and (dim or fit_on or save_whitening):
        raise ZhtextError("--dim, --fit-on and --save-whitening need --whiten")
    to_file = output not in (None, "-")
    if fmt is None:
        fmt = Format.npy if to_file and not output.endswith((".jsonl", ".json")) else Format.jsonl
    if fmt is Format.npy and not to_file and sys.stdout.isatty():
        raise ZhtextError("refusing to write a binary .npy to the terminal: give -o FILE or --format jsonl")

    texts = list(iter_lines(input_file, encoding))
    if not texts:
        raise ZhtextError(f"no sentences to embed in {'<stdin>' if input_file == '-' else input_file}")
    embedder = _load_embedder(model, pooling.value, whitening, max_len, batch_size, device, quiet)
    progress = not quiet
    if whitening is not None and dim is not None:
        assert embedder.whitening is not None
        embedder.whitening.dim = dim
    if whiten and whitening is None:
        if fit_on is not None:
            embedder.fit_whitening(read_fit_sentences(fit_on, encoding), dim, progress)
            vectors = embedder.encode(texts, progress)
        else:
            vectors = embedder.encode_and_fit(texts, dim, progress)
        _warn_rank(embedder)
    else:
        vectors = embedder.encode(texts, progress)

    if save_whitening:
        assert embedder.whitening is not None
        embedder.whitening.save(save_whitening)
    if fmt is Format.jsonl:
        _write_jsonl(output, texts, vectors)
    elif to_file:
        assert output is not None
        save_index(output, vectors, embedder)
    else:
        import numpy as np

        np.save(sys.stdout.buffer, vectors)
        sys.stdout.buffer.flush()
    if not quiet:
        how = f", whitened to {vectors.shape[1]} dims" if embedder.whitening else ""
        where = f" -> {escape(output)}" if to_file and output else ""
        console.print(
            f"[dim]embedded {len(texts):,} sentences with {escape(model)} ({pooling.value}{how}){where}[/]",
            highlight=False,
        )


@evaluate_app.command("embed")
def evaluate_embed(
    model: ModelOpt,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="STS pairs: s1<TAB>s2<TAB>score lines (Chinese STS-B) or an STS-benchmark .csv "
            "(tab-separated, score in column 5, sentences in 6 and 7).",
            show_default=False,
        ),
    ],
    pooling: PoolingOpt = Pooling.first_last_avg,
    whiten: Annotated[
        bool,
        typer.Option(
            "--whiten", help="Whiten before comparing; fitted on --fit-on or on --data's own sentences."
        ),
    ] = False,
    dim: Annotated[int | None, typer.Option("--dim", min=1, help="Whitened dimensions to keep.")] = None,
    fit_on: Annotated[
        str | None,
        typer.Option(
            "--fit-on",
            help="Fit the whitening on these sentences: a text file (one per line) or an STS file "
            "(both sentences of each pair), e.g. the train split.",
        ),
    ] = None,
    whitening: Annotated[
        str | None, typer.Option("--whitening", help="Apply a saved whitening (.npz) instead of fitting one.")
    ] = None,
    batch_size: BatchOpt = 64,
    max_len: MaxLenOpt = 256,
    device: DeviceOpt = None,
    encoding: EncodingOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the settings.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Score sentence vectors on STS pairs: Spearman correlation between cosine and gold scores.

    Without --whiten the raw pooled vectors are compared. With --whiten and no --fit-on the whitening is fitted on the pairs' own sentences, as BERT-whitening's evaluation does; --fit-on a train split keeps the test set unseen. Prints "spearman<TAB>value" (or --json).

    Examples:

        zhtext evaluate embed -m bert-base-chinese --data STS-B.test.data --whiten --dim 256 --fit-on STS-B.train.data

        zhtext evaluate embed -m ./all-MiniLM-L6-v2 --data sts-test.csv --pooling last-avg
    """
    from zhtext.tasks.embed import evaluate_sts, read_fit_sentences, read_sts

    if whitening and fit_on:
        raise ZhtextError("--fit-on fits a new whitening; it cannot be combined with --whitening")
    whiten = whiten or whitening is not None
    if not whiten and (dim or fit_on):
        raise ZhtextError("--dim and --fit-on need --whiten")
    pairs = read_sts(data, encoding)
    embedder = _load_embedder(model, pooling.value, whitening, max_len, batch_size, device, quiet)
    progress = not quiet
    fit_on_data = False
    if whitening is not None:
        assert embedder.whitening is not None
        embedder.whitening.dim = dim or embedder.whitening.dim
        fitted = whitening
    elif whiten and fit_on is not None:
        embedder.fit_whitening(read_fit_sentences(fit_on, encoding), dim, progress)
        fitted = fit_on
    else:
        fit_on_data = whiten
        fitted = data if whiten else None
    score = evaluate_sts(embedder, pairs, fit_on_data=fit_on_data, dim=dim, progress=progress)
    if whiten:
        _warn_rank(embedder)
    result = {
        "spearman": score,
        "pairs": len(pairs),
        "model": model,
        "pooling": pooling.value,
        "whitening": fitted,
        "dim": embedder.dim,
    }
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    if not quiet:
        how = f"whitened ({escape(str(fitted))}), {embedder.dim} dims" if whiten else "no whitening"
        console.print(
            f"[dim]{len(pairs):,} pairs of {escape(data)}; {escape(model)}, {pooling.value}, {how}[/]",
            highlight=False,
        )
    typer.echo(f"spearman\t{score:.6f}")


@app.command()
def similar(
    queries: Annotated[list[str], typer.Argument(help="Query sentences.", show_default=False)],
    index: Annotated[
        str,
        typer.Option(
            "--index",
            help="Vectors written by 'zhtext embed -o FILE.npy' (its .json beside it).",
            show_default=False,
        ),
    ],
    texts: Annotated[
        str,
        typer.Option(
            "--texts",
            help="The sentences the index was made from, one per line, same order.",
            show_default=False,
        ),
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Neighbours per query.")] = 10,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = None,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Find the sentences nearest to each query by cosine similarity.

    Queries are encoded with the model, pooling and whitening the index was made with (read from the .json beside it). Output: one tab-separated line per hit: query, rank, score, sentence.

    Example:

        zhtext embed corpus.txt -m bert-base-chinese --whiten --dim 256 -o corpus.npy
        zhtext similar "今天天气怎么样" --index corpus.npy --texts corpus.txt -k 5
    """
    from zhtext.tasks.embed import cosine_top_k, load_index

    vectors, meta = load_index(index)
    lines = list(iter_lines(texts, encoding))
    if len(lines) != vectors.shape[0]:
        raise ZhtextError(
            f"{texts} has {len(lines):,} lines but the index holds {vectors.shape[0]:,} vectors"
        )
    max_len = int(meta.get("max_len", 256))
    embedder = _load_embedder(
        meta["model"], meta["pooling"], meta.get("whitening"), max_len, batch_size, device, quiet
    )
    found = embedder.encode(queries)
    if found.shape[1] != vectors.shape[1]:
        raise ZhtextError(f"queries encode to {found.shape[1]} dims but the index has {vectors.shape[1]}")
    rows, scores = cosine_top_k(vectors, found, top_k)
    with atomic_output(None) as out:
        for query, hit_rows, hit_scores in zip(queries, rows, scores):
            for rank, (row, score) in enumerate(zip(hit_rows, hit_scores), 1):
                out.write(f"{query}\t{rank}\t{score:.4f}\t{lines[row]}\n")
