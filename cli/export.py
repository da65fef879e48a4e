"""``zhtext export onnx``: a tagger's or an embedder's encoder as an ONNX graph for onnxruntime."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.markup import escape

from .base import QuietOpt, app, console

export_app = typer.Typer(help="Export a model for another runtime (onnx).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx(
    model_dir: Annotated[str, typer.Argument(
        help="A tagger or embedder folder (or a plain Hugging Face encoder folder).",
        show_default=False)],
    output: Annotated[str, typer.Option(
        "-o", "--output", show_default=False,
        help="Folder for the export: new, empty, or an earlier export (replaced).")],
    quiet: QuietOpt = False,
) -> None:
    """Export a tagger's or an embedder's encoder to ONNX, for onnxruntime.

    A tagger exports its encoder and emission layer (emissions), an embedder its encoder and pooling (vectors); the folder also holds what zhtext needs beside the graph: the tokenizer, the CRF, the whitening. 'zhtext tag --onnx' and 'zhtext embed --onnx' (or any command given the folder) then run the graph with onnxruntime on the CPU, the CRF, span scores and whitening in zhtext as before. Needs the onnx extra: pip install 'zhtext[onnx]'.

    Example:

        zhtext export onnx ner-model -o ner-onnx && echo '浙商银行企业信贷部' | zhtext tag -m ner-onnx --onnx
    """
    from zhtext.tasks.export import export_onnx as export

    status = console.status(f"exporting {escape(model_dir)}") if not quiet else None
    with status or contextlib.nullcontext():
        model, out = export(model_dir, output)
    if not quiet:
        console.print(f"[dim]exported the {model.task} model {escape(model_dir)} to "
                      f"{escape(str(out))}[/]", highlight=False)

