"""``zhtext embed``, ``zhtext evaluate embed``, ``zhtext similar`` and ``zhtext train embed``:
sentence vectors, their STS score, search, and an embedder saved with its whitening."""

from __future__ import annotations

import contextlib
import json
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zhtext.errors import ZhtextError
from zhtext.io.reading import iter_lines
from zhtext.io.writing import atomic_output, check_output

from .base import (
    BatchSizeOpt,
    DeviceOpt,
    EncodingOpt,
    JsonOpt,
    ModelDirOpt,
    ModelOpt,
    NeighboursOpt,
    OnnxOpt,
    OutputOpt,
    OverwriteOpt,
    QuantizeOpt,
    QuietOpt,
    TrainDataOpt,
    alias,
    app,
    console,
    echo,
    evaluate_app,
    train_app,
    warn,
)

if TYPE_CHECKING:
    import numpy as np

    from zhtext.tasks.embed import Embedder

# Spellings of earlier releases, kept working (hidden, with a warning) for one more.
alias("similar", "--top-k", "--neighbours")


class Pooling(str, Enum):
    cls = "cls"
    last_avg = "last-avg"
    first_last_avg = "first-last-avg"
    pooler = "pooler"


class Format(str, Enum):
    npy = "npy"
    jsonl = "jsonl"


# Options of these commands only. Pooling and length default to a saved embedder's own settings.
PoolingOpt = Annotated[
    Pooling | None,
    typer.Option(
        "--pooling",
        help="cls: the [CLS] vector; last-avg: mean of the last layer's tokens; first-last-avg: "
        "mean of the first and last layers' token means (BERT-whitening's choice); pooler: BERT's "
        "pooler output (default: a saved embedder's, else first-last-avg).",
        show_default=False,
    ),
]
MaxLenOpt = Annotated[
    int | None,
    typer.Option(
        "--max-len",
        min=2,
        help="Longest input in tokens ([CLS] and [SEP] included; default: a saved embedder's, else 256).",
        show_default=False,
    ),
]
DimOpt = Annotated[
    int | None, typer.Option("--dim", min=1, help="Keep this many whitened dimensions (e.g. 256 or 128).")
]
WhiteningFileOpt = Annotated[
    str | None,
    typer.Option(
        "--whitening",
        help="Apply a whitening saved with --save-whitening (instead of the model's own, if it has one).",
    ),
]


def _load_embedder(
    model: str,
    pooling: Pooling | str | None,
    whitening: str | bool | None,
    max_len: int | None,
    batch_size: int,
    device: str | None,
    quiet: bool,
    quantize: str | None = None,
    onnx: bool = False,
) -> Embedder:
    from zhtext.tasks.embed import Embedder

    with console.status(f"loading {escape(model)}") if not quiet else contextlib.nullcontext():
        return Embedder.load(model, device=device, batch_size=batch_size, max_len=max_len,
                             pooling=pooling.value if isinstance(pooling, Pooling) else pooling,
                             whitening=whitening, quantize=quantize, onnx=onnx or None)  # fmt: skip


def _check_dim(embedder: Embedder, dim: int | None) -> None:
    """--dim re-cuts a whitening that is given or saved with the model; without one, it is an error."""
    if dim is None:
        return
    if embedder.whitening is None:
        raise ZhtextError("--dim needs a whitening: give --whiten (or --whitening FILE)")
    embedder.whitening.dim = dim


def _warn_rank(embedder: Embedder) -> None:
    w = embedder.whitening
    if w is not None and w.output_dim > w.rank:
        warn(f"the whitening was fitted on {w.n:,} vectors and sees only {w.rank} of {w.input_dim} "
             f"directions; dimensions past {w.rank} carry no information (use --dim {w.rank} or fit "
             "on more sentences)")


def _write_jsonl(path: str | None, texts: list[str], vectors: np.ndarray) -> None:
    from zhtext.tasks.vectors import vector_json

    with atomic_output(path) as out:
        for text, row in zip(texts, vectors):
            out.write(f'{{"text": {json.dumps(text, ensure_ascii=False)}, "vector": {vector_json(row)}}}\n')


@app.command()
def embed(
    model: ModelOpt,
    input_file: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="Sentences, one per line; '-' reads stdin.")
    ] = "-",
    pooling: PoolingOpt = None,
    whiten: Annotated[
        bool,
        typer.Option(
            "--whiten",
            help="Fit a BERT-whitening (vectors then come L2-normalised) on --fit-on, or on the "
            "input itself.",
        ),
    ] = False,
    dim: DimOpt = None,
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
    whitening: WhiteningFileOpt = None,
    batch_size: BatchSizeOpt = 64,
    max_len: MaxLenOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
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
    quantize: QuantizeOpt = None,
    onnx: OnnxOpt = False,
    encoding: EncodingOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Turn sentences into vectors, one per input line, float32.

    With --whiten the vectors are BERT-whitened: the mean of a corpus's vectors is removed and their covariance made the identity, which makes cosine similarity far more telling; --dim then keeps the strongest directions only. Fit once with --save-whitening, apply to new text with --whitening (or save encoder and whitening as one model with 'zhtext train embed'; its whitening is then applied by itself). A .npy output can then be searched with 'zhtext similar'.

    Examples:

        zhtext embed corpus.txt -m bert-base-chinese --whiten --dim 256 --save-whitening w.npz -o corpus.npy

        zhtext embed queries.txt -m bert-base-chinese --whitening w.npz --format jsonl
    """
    from zhtext.tasks.vectors import read_fit_sentences, save_index

    if whitening and save_whitening:
        raise ZhtextError(
            "give --save-whitening (fit a new whitening) or --whitening (apply a saved one), not both"
        )
    if whitening and fit_on:
        raise ZhtextError("--fit-on fits a new whitening; it cannot be combined with --whitening")
    fit = whiten and whitening is None
    if not fit and (fit_on or save_whitening):
        raise ZhtextError("--fit-on and --save-whitening need --whiten")
    to_file = output not in (None, "-")
    if fmt is None:
        fmt = Format.npy if to_file and not output.endswith((".jsonl", ".json")) else Format.jsonl
    if fmt is Format.npy and not to_file and sys.stdout.isatty():
        raise ZhtextError("refusing to write a binary .npy to the terminal: give -o FILE or --format jsonl")

    texts = list(iter_lines(input_file, encoding))
    for path in (output, save_whitening):  # written at the end: found unwritable before the work
        check_output(path)
    if not texts:
        raise ZhtextError(f"no sentences to embed in {'<stdin>' if input_file == '-' else input_file}")
    # A fresh fit replaces any whitening saved with the model.
    embedder = _load_embedder(model, pooling, False if fit else whitening, max_len, batch_size, device, quiet,
                              quantize and quantize.value, onnx)
    progress = not quiet
    if fit:
        if fit_on is not None:
            embedder.fit_whitening(read_fit_sentences(fit_on, encoding), dim, progress)
            vectors = embedder.encode(texts, progress)
        else:
            vectors = embedder.encode_and_fit(texts, dim, progress)
        _warn_rank(embedder)
    else:
        _check_dim(embedder, dim)
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

        with atomic_output(None) as out:  # a closed pipe: one error line
            np.save(out.buffer, vectors)
    if not quiet:
        how = f", whitened to {vectors.shape[1]} dims" if embedder.whitening else ""
        where = f" -> {escape(output)}" if to_file and output else ""
        console.print(
            f"[dim]embedded {len(texts):,} sentences with {escape(model)} ({embedder.pooling}{how}){where}[/]",
            highlight=False,
        )


StsDataHelp = ("STS pairs: s1<TAB>s2<TAB>score lines (Chinese STS-B) or an STS-benchmark .csv "
               "(tab-separated, score in column 5, sentences in 6 and 7).")  # fmt: skip


@evaluate_app.command("embed")
def evaluate_embed(
    model: ModelOpt,
    data: Annotated[str, typer.Option("--data", help=StsDataHelp, show_default=False)],
    pooling: PoolingOpt = None,
    whiten: Annotated[
        bool,
        typer.Option(
            "--whiten", help="Fit a whitening before comparing: on --fit-on, or on --data's own sentences."
        ),
    ] = False,
    dim: DimOpt = None,
    fit_on: Annotated[
        str | None,
        typer.Option(
            "--fit-on",
            help="Fit the whitening on these sentences: a text file (one per line) or an STS file "
            "(both sentences of each pair), e.g. the train split.",
        ),
    ] = None,
    whitening: WhiteningFileOpt = None,
    batch_size: BatchSizeOpt = 64,
    max_len: MaxLenOpt = None,
    device: DeviceOpt = None,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score sentence vectors on STS pairs: Spearman correlation between cosine and gold scores.

    Without --whiten the model's vectors are compared as they come (raw pooled, or whitened by a whitening saved with the model or given by --whitening). With --whiten and no --fit-on the whitening is fitted on the pairs' own sentences, as BERT-whitening's evaluation does; --fit-on a train split keeps the test set unseen. Prints "spearman<TAB>value" (or --json).

    Examples:

        zhtext evaluate embed -m bert-base-chinese --data STS-B.test.data --whiten --dim 256 --fit-on STS-B.train.data

        zhtext evaluate embed -m ./all-MiniLM-L6-v2 --data sts-test.csv --pooling last-avg
    """
    from zhtext.tasks.vectors import read_fit_sentences, read_sts

    if whitening and fit_on:
        raise ZhtextError("--fit-on fits a new whitening; it cannot be combined with --whitening")
    fit = whiten and whitening is None
    if not fit and fit_on:
        raise ZhtextError("--fit-on needs --whiten")
    pairs = read_sts(data, encoding)
    embedder = _load_embedder(model, pooling, False if fit else whitening, max_len, batch_size, device, quiet)
    progress = not quiet
    fit_on_data = False
    if not fit:
        _check_dim(embedder, dim)
        fitted = whitening or (f"saved with {model}" if embedder.whitening else None)
    elif fit_on is not None:
        embedder.fit_whitening(read_fit_sentences(fit_on, encoding), dim, progress)
        fitted = fit_on
    else:
        fit_on_data = True
        fitted = data
    figures = embedder.evaluate(pairs, fit_on_data=fit_on_data, dim=dim, progress=progress)
    if fit:
        _warn_rank(embedder)
    result = {
        "spearman": figures["spearman"],
        "pairs": figures["pairs"],
        "model": model,
        "pooling": embedder.pooling,
        "whitening": fitted,
        "dim": figures["dim"],
    }
    if as_json:
        echo(json.dumps(result, ensure_ascii=False))
        return
    if not quiet:
        how = f"whitened ({escape(str(fitted))}), {embedder.dim} dims" if fitted else "no whitening"
        console.print(
            f"[dim]{len(pairs):,} pairs of {escape(data)}; {escape(model)}, {embedder.pooling}, {how}[/]",
            highlight=False,
        )
    echo(f"spearman\t{figures['spearman']:.6f}")


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
    neighbours: NeighboursOpt = 10,
    output: OutputOpt = None,
    batch_size: BatchSizeOpt = 64,
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
    from zhtext.tasks.vectors import cosine_top_k, load_index

    check_output(output)
    vectors, meta = load_index(index)
    lines = list(iter_lines(texts, encoding))
    if len(lines) != vectors.shape[0]:
        raise ZhtextError(
            f"{texts} has {len(lines):,} lines but the index holds {vectors.shape[0]:,} vectors"
        )
    # Exactly the index's settings: no whitening if it had none, even if the model folder has one.
    embedder = _load_embedder(meta["model"], meta["pooling"], meta.get("whitening") or False,
                              int(meta.get("max_len", 256)), batch_size, device, quiet)  # fmt: skip
    found = embedder.encode(queries)
    if found.shape[1] != vectors.shape[1]:
        raise ZhtextError(f"queries encode to {found.shape[1]} dims but the index has {vectors.shape[1]}")
    rows, scores = cosine_top_k(vectors, found, neighbours)
    with atomic_output(output) as out:
        for query, hit_rows, hit_scores in zip(queries, rows, scores):
            for rank, (row, score) in enumerate(zip(hit_rows, hit_scores), 1):
                out.write(f"{query}\t{rank}\t{score:.4f}\t{lines[row]}\n")


@train_app.command("embed")
def train_embed(
    model: ModelOpt,
    train: TrainDataOpt,
    output: ModelDirOpt,
    dev: Annotated[
        str | None,
        typer.Option("--dev", help=f"Score the saved embedder on these STS pairs. {StsDataHelp}"),
    ] = None,
    pooling: PoolingOpt = None,
    dim: DimOpt = None,
    max_len: MaxLenOpt = None,
    batch_size: BatchSizeOpt = 64,
    device: DeviceOpt = None,
    encoding: EncodingOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit a BERT-whitening over an encoder and save both as one embedder folder.

    --train: the sentences to fit on, one per line (an STS file gives both sentences of each pair), streamed, so any number fits. The whitening is solved in closed form from one pass: there are no epochs or learning rate. The folder (Hugging Face layout + whitening.npz + zhtext.json) is then a model for 'zhtext embed', 'evaluate embed' and 'pipe', which apply its pooling, length and whitening by themselves.

    Example:

        zhtext train embed -m bert-base-chinese --train corpus.txt --dim 256 -o my-embedder

        zhtext embed new.txt -m my-embedder -o new.npy
    """
    from zhtext.tasks.embed import Embedder, EmbedTrainConfig

    config = EmbedTrainConfig(
        train=train, output=output, dev=dev, model=model, encoding=encoding, batch_size=batch_size,
        device=device, progress=not quiet, dim=dim, max_len=max_len, overwrite=overwrite,
        pooling=pooling.value if pooling else None,
    )  # fmt: skip
    embedder = Embedder.train(config)
    _warn_rank(embedder)
    if not quiet:
        w = embedder.whitening
        assert w is not None
        scored = "".join(f"; dev: {f['pairs']:,} pairs" for f in embedder.history)
        console.print(
            f"[dim]whitening fitted on {w.n:,} {embedder.pooling} vectors of {escape(model)}, "
            f"{w.output_dim} of {w.input_dim} dims kept{scored} -> {escape(output)}[/]",
            highlight=False,
        )
    for figures in embedder.history:
        echo(f"spearman\t{figures['spearman']:.6f}")
