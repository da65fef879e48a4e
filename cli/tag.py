"""zhtext CLI: ``train tagger``, ``tag`` and ``evaluate tagger`` (BERT+CRF sequence labelling)."""

from __future__ import annotations

import contextlib
import itertools
import json
import warnings
from collections.abc import Iterator
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from zhtext.errors import ZhtextError

from .base import (
    DeviceOpt,
    EncodingOpt,
    GradAccumOpt,
    HiddenOpt,
    LayersOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    OutputOpt,
    ResumeOpt,
    SeedOpt,
    app,
    check_model_or_scratch,
    console,
    evaluate_app,
    train_app,
)

# Texts handed to the tagger at once when tagging a stream: big enough to batch well, small
# enough that output starts soon and memory stays flat.
CHUNK_LINES = 256


class DataFormat(str, Enum):
    auto = "auto"
    conll = "conll"
    cluener = "cluener"
    segmented = "segmented"


class Scheme(str, Enum):
    BIO = "BIO"
    BIOES = "BIOES"
    BMES = "BMES"


class OutFormat(str, Enum):
    jsonl = "jsonl"
    conll = "conll"


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show the library's data warnings (e.g. a dropped nested entity) as one plain line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        console.print(f"zhtext: warning: {warning.message}", markup=False, highlight=False)


@train_app.command("tagger")
def train_tagger(
    train: Annotated[
        str,
        typer.Option(
            "--train",
            help="Training data (CoNLL 'char TAG', CLUENER JSON lines, or a segmented corpus).",
            show_default=False,
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Folder for the model (Hugging Face layout + zhtext.json); "
            "the best model by dev F1 is kept here.",
            show_default=False,
        ),
    ],
    dev: Annotated[
        str | None,
        typer.Option(
            "--dev", help="Dev data, same formats: F1 after each epoch picks the best model."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Pretrained encoder: hub id (bert-base-chinese) or local directory."
        ),
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option(
            "--from-scratch",
            help="Build a small BERT with a character vocabulary from the training data.",
        ),
    ] = False,
    layers: LayersOpt = 2,
    hidden: HiddenOpt = 128,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training data.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sentences per batch.")] = 32,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Encoder learning rate (default: 3e-5 pretrained, 1e-3 from scratch)."
        ),
    ] = None,
    head_lr: Annotated[
        float | None,
        typer.Option(
            "--head-lr",
            help="Learning rate of the emission layer and CRF (default: 100 x lr, at most 1e-2).",
        ),
    ] = None,
    dropout: Annotated[
        float,
        typer.Option(
            "--dropout",
            help="Dropout before the emission layer (and inside a from-scratch encoder).",
        ),
    ] = 0.1,
    max_len: Annotated[
        int,
        typer.Option(
            "--max-len",
            help="Encoder window in tokens ([CLS] and [SEP] included); longer texts are windowed.",
        ),
    ] = 256,
    seed: SeedOpt = 42,
    data_format: Annotated[
        DataFormat, typer.Option("--format", help="Format of --train and --dev.")
    ] = DataFormat.auto,
    scheme: Annotated[
        Scheme | None,
        typer.Option(
            "--scheme",
            help="Tag scheme (default: BMES for segmented data, else BIOES).",
            case_sensitive=False,
        ),
    ] = None,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", help="Also evaluate on dev every N steps.")
    ] = None,
    grad_accum: GradAccumOpt = 1,
    resume: ResumeOpt = False,
    device: DeviceOpt = None,
) -> None:
    """Train a BERT+CRF tagger (NER, or BMES segmentation) and keep the best model by dev F1.

    Examples:

        zhtext train tagger --train cluener/train.json --dev cluener/dev.json --model bert-base-chinese --out ner-model

        zhtext train tagger --train train.json --dev dev.json --from-scratch --layers 2 --hidden 128 --out small-ner --max-seconds 600

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.labels.formats import read_examples
    from zhtext.tasks.tagger import Tagger

    check_model_or_scratch(model, from_scratch)
    with warnings_as_lines():
        train_examples = read_examples(train, data_format.value)
        dev_examples = read_examples(dev, data_format.value) if dev else None
    console.print(
        f"training on {len(train_examples)} examples"
        + (f", evaluating on {len(dev_examples)}" if dev_examples else "")
    )
    tagger = Tagger.train(
        train_examples,
        dev_examples,
        out_dir=out,
        model=model,
        layers=layers,
        hidden=hidden,
        scheme=scheme.value if scheme else None,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        head_lr=head_lr,
        dropout=dropout,
        max_len=max_len,
        seed=seed,
        max_seconds=max_seconds,
        max_steps=max_steps,
        eval_every=eval_every,
        grad_accum=grad_accum,
        resume=resume,
        device=device,
    )
    best = tagger.meta.get("best") or {}
    summary = f"model saved to {out}"
    if "f1" in best:
        summary += f" (best dev F1 {best['f1']:.4f} at epoch {best['epoch']})"
    console.print(summary)


@app.command("tag")
def tag(
    source: Annotated[
        str, typer.Argument(help="Text file, one text per line; '-' reads stdin.")
    ] = "-",
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Tagger directory (from 'zhtext train tagger').", show_default=False
        ),
    ] = ...,
    out_format: Annotated[
        OutFormat,
        typer.Option(
            "--format",
            help="jsonl: one JSON object per line; conll: 'char TAG' lines, blank line between texts.",
        ),
    ] = OutFormat.jsonl,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k",
            help="Also list the K best taggings with their path probabilities (jsonl only).",
        ),
    ] = 1,
    output: OutputOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per encoder batch.")] = 32,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Tag each line of a text file with a trained tagger.

    JSONL output: {"text": ..., "spans": [{"start", "end", "label", "text", "score"}]}, where end is exclusive and score is the span's marginal probability under the CRF. With --top-k K an "nbest" list of K taggings follows.

    Example:

        echo '浙商银行企业信贷部叶老桂博士' | zhtext tag --model ner-model
    """
    from zhtext.io.writing import atomic_output
    from zhtext.io.reading import iter_lines
    from zhtext.io.progress import Bar
    from zhtext.tasks.tagger import Tagger, prediction_record

    if top_k < 1:
        raise ZhtextError("--top-k must be at least 1")
    if top_k > 1 and out_format is OutFormat.conll:
        raise ZhtextError("--top-k needs --format jsonl (CoNLL output holds one tagging)")
    tagger = Tagger.load(model, device=device, batch_size=batch_size)
    # A progress line only when the results go to a file: on a terminal they are the progress.
    with (
        atomic_output(output) as handle,
        Bar(enabled=output not in (None, "-"), unit="lines") as bar,
    ):
        task = bar.add("tagging")
        chunk: list[str] = []
        for line in itertools.chain(iter_lines(source, encoding), [None]):  # None: flush the rest
            if line is not None:
                chunk.append(line)
                if len(chunk) < CHUNK_LINES:
                    continue
            for text, cands in zip(chunk, tagger.predict(chunk, top_k=top_k)):
                if out_format is OutFormat.jsonl:
                    handle.write(prediction_record(text, cands) + "\n")
                else:
                    tags = tagger.tags_of(text, cands[0].spans)
                    handle.write("".join(f"{ch} {t}\n" for ch, t in zip(text, tags)) + "\n")
            handle.flush()
            bar.advance(task, len(chunk))
            chunk = []


@evaluate_app.command("tagger")
def evaluate_tagger(
    model: Annotated[str, typer.Option("--model", help="Tagger directory.", show_default=False)],
    data: Annotated[
        str,
        typer.Option(
            "--data", help="Labelled data (CoNLL, CLUENER JSON or segmented).", show_default=False
        ),
    ],
    data_format: Annotated[
        DataFormat, typer.Option("--format", help="Format of --data.")
    ] = DataFormat.auto,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the figures as one JSON object instead of a table."),
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per encoder batch.")] = 32,
    device: DeviceOpt = None,
) -> None:
    """Score a tagger on labelled data: exact-span precision, recall and F1 per label and overall.

    A BMES (segmentation) model is scored on words instead, with the SIGHAN figures.

    Example:

        zhtext evaluate tagger --model ner-model --data cluener/dev.json
    """
    from zhtext.eval.metrics import SegScore
    from zhtext.tasks.tagger import Tagger
    from zhtext.tasks.tagger import evaluate_tagger as score

    tagger = Tagger.load(model, device=device, batch_size=batch_size)
    with warnings_as_lines():
        result = score(tagger, data, data_format.value)
    if isinstance(result, SegScore):
        if as_json:
            print(json.dumps(result.as_dict(), ensure_ascii=False))
        else:
            print(result.format())
        return
    if as_json:
        print(
            json.dumps(
                {
                    k: {"p": v.p, "r": v.r, "f1": v.f, "support": v.support}
                    for k, v in result.items()
                },
                ensure_ascii=False,
            )
        )
        return
    table = Table(title=f"{model} on {data}")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, prf in result.items():
        if label == "overall":
            table.add_section()
        table.add_row(
            label,
            f"{prf.p:.4f}",
            f"{prf.r:.4f}",
            f"{prf.f:.4f}",
            str(prf.support),
            style="bold" if label == "overall" else None,
        )
    console.print(table)
