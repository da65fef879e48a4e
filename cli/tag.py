"""zhtext CLI: ``train tagger``, ``tag`` and ``evaluate tagger`` (BERT+CRF sequence labelling)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from .base import (
    BatchSizeOpt,
    DevDataOpt,
    DeviceOpt,
    DevLimitOpt,
    EmaOpt,
    EncodingOpt,
    EpochsOpt,
    EvalEveryOpt,
    FromScratchOpt,
    GradAccumOpt,
    HiddenOpt,
    InputFormat,
    InputFormatOpt,
    JsonOpt,
    KeepCheckpointOpt,
    LayersOpt,
    LexiconOpt,
    LrOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    ModelDirOpt,
    ModelOpt,
    NBestOpt,
    OnnxOpt,
    OutputOpt,
    OverwriteOpt,
    QuantizeOpt,
    QuietOpt,
    ResumeOpt,
    SeedOpt,
    StartModelOpt,
    TrainDataOpt,
    above,
    alias,
    app,
    below,
    console,
    echo,
    evaluate_app,
    train_app,
    train_model,
    warnings_as_lines,
)

# Texts handed to the tagger at once when tagging a stream: big enough to batch well, small
# enough that output starts soon and memory stays flat.
CHUNK_LINES = 256

# Old spellings, kept for one release (hidden, warn once).
alias("train tagger", "--out", "--output")
alias("train tagger", "--format", "--input-format")
alias("tag", "--top-k", "--n-best")
alias("evaluate tagger", "--format", "--input-format")


class Scheme(str, Enum):
    BIO = "BIO"
    BIOES = "BIOES"
    BMES = "BMES"


class OutFormat(str, Enum):
    jsonl = "jsonl"
    conll = "conll"




@train_app.command("tagger")
def train_tagger(
    train: TrainDataOpt,
    output: ModelDirOpt,
    dev: DevDataOpt = None,
    model: StartModelOpt = None,
    from_scratch: FromScratchOpt = False,
    layers: LayersOpt = 2,
    hidden: HiddenOpt = 128,
    epochs: EpochsOpt = 3,
    batch_size: BatchSizeOpt = 32,
    lr: LrOpt = None,
    head_lr: Annotated[
        float | None,
        typer.Option(
            "--head-lr",
            callback=above(0),
            help="Learning rate of the emission layer and CRF (default: 100 x lr, at most 1e-2).",
        ),
    ] = None,
    dropout: Annotated[
        float,
        typer.Option(
            "--dropout",
            min=0,
            callback=below(1),
            help="Dropout before the emission layer (and inside a from-scratch encoder), 0 <= P < 1.",
        ),
    ] = 0.1,
    max_len: Annotated[
        int,
        typer.Option(
            "--max-len",
            min=3,
            help="Encoder window in tokens ([CLS] and [SEP] included); longer texts are windowed.",
        ),
    ] = 256,
    seed: SeedOpt = 42,
    input_format: InputFormatOpt = InputFormat.auto,
    encoding: EncodingOpt = None,
    scheme: Annotated[
        Scheme | None,
        typer.Option(
            "--scheme",
            help="Tag scheme (default: BMES for segmented data, else BIOES).",
            case_sensitive=False,
        ),
    ] = None,
    lexicon: LexiconOpt = None,
    word_dim: Annotated[
        int,
        typer.Option(
            "--word-dim",
            min=0,
            help="With --lexicon: size of the embeddings of the lexicon's words that the training "
            "texts hold (0: only the word-length and frequency features).",
        ),
    ] = 50,
    word_dropout: Annotated[
        float,
        typer.Option(
            "--word-dropout",
            min=0.0,
            max=0.99,
            help="With --lexicon and word embeddings: the share of training words shown as a word "
            "the training texts never held, so the tagger learns what to make of the lexicon's "
            "other words.",
        ),
    ] = 0.1,
    lstm: Annotated[
        bool | None,
        typer.Option(
            "--lstm/--no-lstm",
            help="A BiLSTM between the encoder and the tag scores (default: on from scratch, off "
            "with a pretrained --model).",
        ),
    ] = None,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    eval_every: EvalEveryOpt = None,
    dev_limit: DevLimitOpt = None,
    grad_accum: GradAccumOpt = 1,
    ema: EmaOpt = 0.0,
    resume: ResumeOpt = False,
    keep_checkpoint: KeepCheckpointOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a BERT+CRF tagger (NER, or BMES segmentation) and keep the best model by dev F1.

    Data: CoNLL 'char TAG' lines, CLUENER JSON lines, or a segmented corpus (--input-format auto
    detects which).

    Examples:

        zhtext train tagger --train cluener/train.json --dev cluener/dev.json -m bert-base-chinese -o ner-model

        zhtext train tagger --train train.json --dev dev.json --from-scratch --layers 2 --hidden 128 -o small-ner --max-seconds 600

    With --lexicon, each character also gets features of the lexicon words that begin, continue,
    end or equal it (their lengths and frequencies, and embeddings of the words
    themselves); the lexicon is saved with the model, so tag needs nothing more:

        zhtext train tagger --train train.json --dev dev.json --from-scratch --lexicon jieba -o lex-ner

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.tagger import Tagger, TaggerTrainConfig

    train_model(Tagger, TaggerTrainConfig, locals(), "F1")


@app.command("tag")
def tag(
    source: Annotated[
        str, typer.Argument(help="Text file, one text per line; '-' reads stdin.")
    ] = "-",
    model: ModelOpt = ...,
    out_format: Annotated[
        OutFormat,
        typer.Option(
            "--format",
            help="jsonl: one JSON object per line; conll: 'char TAG' lines, blank line between texts.",
        ),
    ] = OutFormat.jsonl,
    n_best: NBestOpt = 1,
    output: OutputOpt = None,
    batch_size: BatchSizeOpt = 32,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    onnx: OnnxOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Tag each line of a text file with a trained tagger.

    JSONL output: {"text": ..., "spans": [{"start", "end", "label", "text", "score"}]}, where end is exclusive and score is the span's marginal probability under the CRF. With --n-best N an "nbest" list of the N most probable taggings follows.

    Example:

        echo '浙商银行企业信贷部叶老桂博士' | zhtext tag -m ner-model
    """
    from zhtext.errors import ZhtextError
    from zhtext.io.progress import Bar
    from zhtext.io.reading import iter_lines
    from zhtext.io.writing import atomic_output, check_output
    from zhtext.labels.formats import format_conll
    from zhtext.tasks.tagger import Tagger, prediction_record

    if n_best > 1 and out_format is OutFormat.conll:
        raise ZhtextError("--n-best needs --format jsonl (CoNLL output holds one tagging)")
    lines = iter_lines(source, encoding)  # a missing or unreadable input fails before the model loads
    check_output(output)  # and so does an output that cannot be written
    tagger = Tagger.load(model, device=device, batch_size=batch_size,
                         quantize=quantize and quantize.value, onnx=onnx or None)
    # A progress line only when the results go to a file: on a terminal they are the progress.
    with (
        atomic_output(output) as handle,
        Bar(enabled=not quiet and output not in (None, "-"), unit="lines") as bar,
    ):
        task = bar.add("tagging")
        chunk: list[str] = []
        for line in itertools.chain(lines, [None]):  # None: flush the rest
            if line is not None:
                chunk.append(line)
                if len(chunk) < CHUNK_LINES:
                    continue
            for text, cands in zip(chunk, tagger.nbest(chunk, n_best)):
                if out_format is OutFormat.jsonl:
                    handle.write(prediction_record(text, cands) + "\n")
                else:
                    handle.write(format_conll(text, tagger.tags_of(text, cands[0].spans)))
            handle.flush()
            bar.advance(task, len(chunk))
            chunk = []


@evaluate_app.command("tagger")
def evaluate_tagger(
    model: ModelOpt,
    data: Annotated[
        str,
        typer.Option(
            "--data", help="Labelled data (CoNLL, CLUENER JSON or segmented).", show_default=False
        ),
    ],
    input_format: InputFormatOpt = InputFormat.auto,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
    batch_size: BatchSizeOpt = 32,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    quiet: QuietOpt = False,  # taken by every command; nothing here to silence
) -> None:
    """Score a tagger on labelled data: exact-span precision, recall and F1 per label and overall.

    A BMES (segmentation) model is scored on words instead, with the SIGHAN figures.

    Example:

        zhtext evaluate tagger -m ner-model --data cluener/dev.json
    """
    from zhtext.eval.metrics import SegScore
    from zhtext.labels.formats import read_examples
    from zhtext.tasks.tagger import Tagger

    with warnings_as_lines():
        examples = read_examples(data, input_format.value, encoding)  # before the model loads
        tagger = Tagger.load(model, device=device, batch_size=batch_size,
                             quantize=quantize and quantize.value)
        figures = tagger.evaluate(examples)
    if as_json:
        echo(json.dumps(figures, ensure_ascii=False))
    elif "labels" not in figures:  # a BMES model: the bakeoff's block
        echo(SegScore(**{f.name: figures[f.name] for f in dataclasses.fields(SegScore)}).format())
    else:
        console.print(_table(f"{model} on {data}", figures))


def _table(title: str, figures: dict) -> Table:
    table = Table(title=title)
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    rows = [*figures["labels"].items(), ("overall", figures)]
    for label, row in rows:
        if label == "overall":
            table.add_section()
        table.add_row(label, f"{row['p']:.4f}", f"{row['r']:.4f}", f"{row['f1']:.4f}",
                      str(row["support"]), style="bold" if label == "overall" else None)
    return table
