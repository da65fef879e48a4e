"""The Typer apps that every command module registers on, and shared console helpers."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup


class Interrupted(Exception):
    """Ctrl-C inside a command, carried out to ``main()`` to be reported there.

    Typer turns a KeyboardInterrupt in a command into a silent exit 130, so ``main()`` would never
    see it; this exception passes Typer and click untouched.
    """


class _RootGroup(TyperGroup):
    """The root command group: every command runs inside its ``invoke``."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            # Library code has already cleaned up on the way out (atomic outputs removed their
            # temporary files, training saved its checkpoint).
            raise Interrupted() from exc


app = typer.Typer(
    name="zhtext",
    cls=_RootGroup,
    help="Chinese NLP toolkit: word discovery, segmentation, tagging, titles, generation, embeddings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train a model (tagger, title, gpt).", no_args_is_help=True)
evaluate_app = typer.Typer(help="Score output or a model against gold data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

# transformers draws its own tqdm bar and warnings while loading weights; ours are enough on stderr.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# Options that many commands share, spelled and explained once.
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
]
EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="Input encoding (default: detect UTF-8 or GB18030)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]
OutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="Output file, written atomically (default: stdout).")
]

# The training options every trainer has (defaults stay with each command).
LayersOpt = Annotated[int, typer.Option("--layers", help="From scratch: transformer layers.")]
HiddenOpt = Annotated[int, typer.Option(
    "--hidden", help="From scratch: hidden size (heads = hidden / 64, at least 1).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (initial weights, shuffling, dropout).")]
MaxSecondsOpt = Annotated[float | None, typer.Option(
    "--max-seconds", help="Stop after this many seconds of training (the learning rate decays over the budget).")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps.")]
GradAccumOpt = Annotated[int, typer.Option("--grad-accum", help="Batches per optimizer step.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from OUT/checkpoint.")]


def check_model_or_scratch(model: str | None, from_scratch: bool) -> None:
    """A trainer starts from exactly one of a checkpoint and nothing."""
    if (model is None) == (not from_scratch):
        from zhtext.errors import ZhtextError

        raise ZhtextError("give either --model NAME_OR_DIR or --from-scratch")


# Results go to stdout; progress, tables and messages to stderr so pipes stay clean.
console = Console(stderr=True)
