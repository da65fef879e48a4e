"""The Typer apps that every command module registers on, and shared console helpers."""

from __future__ import annotations

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

# Results go to stdout; progress, tables and messages to stderr so pipes stay clean.
console = Console(stderr=True)
