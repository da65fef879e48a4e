"""The Typer apps that every command module registers on, and shared console helpers."""

from __future__ import annotations

import os

import typer
from rich.console import Console

app = typer.Typer(
    name="zhtext",
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

# Results go to stdout; progress, tables and messages to stderr so pipes stay clean.
console = Console(stderr=True)
