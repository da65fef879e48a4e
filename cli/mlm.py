"""zhtext CLI: ``train mlm`` (masked-language-model pretraining of a BERT on raw text)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

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
    HeldoutEveryOpt,
    HiddenOpt,
    KeepCheckpointOpt,
    LayersOpt,
    LrOpt,
    MaxSecondsOpt,
    MaxStepsOpt,
    MaxVocabOpt,
    ModelDirOpt,
    OverwriteOpt,
    QuietOpt,
    ResumeOpt,
    SeedOpt,
    StartModelOpt,
    below,
    train_app,
    train_model,
)


class Masking(str, Enum):
    word = "word"
    char = "char"


@train_app.command("mlm")
def train_mlm(
    corpus: Annotated[list[Path], typer.Argument(
        metavar="CORPUS", help="Raw text files, one document per line (UTF-8 or GB18030); "
        "read as a stream, so they may be larger than memory.", show_default=False)],
    output: ModelDirOpt,
    model: StartModelOpt = None,
    from_scratch: FromScratchOpt = False,
    lexicon: Annotated[Path | None, typer.Option(
        "--lexicon", show_default=False,
        help="Words for whole-word masking: a lexicon TSV ('zhtext discover') or a jieba-format "
        "dictionary (default: discovered from the corpus itself).")] = None,
    masking: Annotated[Masking, typer.Option(
        "--masking", help="word: mask whole words of the lexicon; char: single tokens."
    )] = Masking.word,
    mask_rate: Annotated[float, typer.Option(
        "--mask-rate", callback=below(1), min=0.01, help="Share of the tokens to predict.")] = 0.15,
    dev: DevDataOpt = None,
    heldout_every: HeldoutEveryOpt = None,
    layers: LayersOpt = 4,
    hidden: HiddenOpt = 256,
    max_len: Annotated[int, typer.Option(
        "--max-len", min=3, help="Tokens per piece of text, [CLS] and [SEP] included (from "
        "scratch: also the model's positions).")] = 128,
    max_vocab: MaxVocabOpt = None,
    epochs: EpochsOpt = 1,
    batch_size: BatchSizeOpt = 32,
    lr: LrOpt = None,
    seed: SeedOpt = 42,
    max_seconds: MaxSecondsOpt = None,
    max_steps: MaxStepsOpt = None,
    grad_accum: GradAccumOpt = 1,
    ema: EmaOpt = 0.0,
    eval_every: EvalEveryOpt = None,
    dev_limit: DevLimitOpt = None,
    resume: ResumeOpt = False,
    keep_checkpoint: KeepCheckpointOpt = False,
    overwrite: OverwriteOpt = False,
    encoding: EncodingOpt = None,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain a BERT as a masked language model on raw text, masking whole words.

    The words come from --lexicon, or are discovered from the corpus first (as 'zhtext discover'
    does), so no outside segmenter is needed. The output is a plain Hugging Face BERT folder:
    'train tagger', 'train title' and 'embed' take it with -m. The learning rate defaults to 5e-4
    from scratch and 5e-5 from a checkpoint.

    Examples:

        zhtext train mlm data/corpus.txt --from-scratch -o bert-corpus --heldout-every 50

        zhtext train mlm news.txt --lexicon lexicon.tsv -m bert-base-chinese -o bert-news --epochs 2

        zhtext train tagger --train train.json -m bert-corpus -o tagger

    Interrupted with Ctrl-C? Run the same command with --resume to continue where it stopped.
    """
    from zhtext.tasks.mlm import MaskedLM, MLMTrainConfig

    train = list(corpus)  # paths, not texts
    train_model(MaskedLM, MLMTrainConfig, locals(), "perplexity")
