"""``zhtext pipe``: several models over one corpus in one streaming pass."""

from __future__ import annotations

import contextlib
import functools
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zhtext.pipeline import STEPS, describe_steps
from zhtext.pipeline.resolve import OLD_NAMES

from .base import (
    CpusPerWorkerOpt,
    DeviceOpt,
    EncodingOpt,
    GpusPerWorkerOpt,
    OutputOpt,
    QuantizeOpt,
    QuietOpt,
    RayOpt,
    StepSettingOpt,
    WorkersOpt,
    alias,
    app,
    console,
    warn,
    warnings_as_lines,
)

if TYPE_CHECKING:
    from zhtext.pipeline import Report

# Line numbers shown per kind of bad line; all of them are in the records' "problems"/"error".
SHOWN_LINES = 10

# zhtext 0.1's per-step options, kept for one release: --tag-model X is --set tag.model=X.
for _flag, _old in {"--dict": "dict", "--user-dict": "user_dict", "--tag-model": "tag_model",
                    "--title-model": "title_model", "--gpt-model": "gpt_model",
                    "--max-new-tokens": "max_new_tokens", "--embed-model": "embed_model",
                    "--whitening": "whitening", "--pooling": "pooling", "--max-len": "embed_max_len"}.items():
    alias("pipe", _flag, "--set {}.{}=".format(*OLD_NAMES[_old]))


class PartFormat(str, Enum):
    """``--format`` of the parts a run on Ray writes."""

    jsonl = "jsonl"
    parquet = "parquet"


def _summary(report: Report, quiet: bool) -> None:
    if not quiet and report.resumed:
        console.print(f"[dim]{report.resumed:,} of {report.parts:,} parts were done already: "
                      "resumed[/]", highlight=False)
    if not quiet:
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.timings.items())
        console.print(
            f"[dim]{report.docs:,} documents in {report.seconds:.1f} s "
            f"({report.docs_per_s:,.1f} docs/s): {steps}[/]",
            highlight=False,
        )
    groups = report.grouped()
    if not groups:
        return
    lines = len({line for numbers in groups.values() for line in numbers})
    # Warnings about the data: shown with -q too (cli/base.py: QuietOpt).
    warn(f'{lines:,} bad line(s), none dropped: each record says its "problems" (or "error" when '
         "it could not be read):")
    for kind, numbers in groups.items():
        shown = ", ".join(map(str, numbers[:SHOWN_LINES])) + (", ..." if len(numbers) > SHOWN_LINES else "")
        # one line per kind, whole (the console never wraps), so a log of the run can be grepped
        console.print(f"  {escape(kind)}: {len(numbers):,} line(s): {shown}", highlight=False)


@app.command(
    "pipe",
    epilog="Steps and their settings (--set STEP.NAME=VALUE, or NAME = VALUE under [STEP] in a "
    "--config file):\n\n" + "\n\n".join(describe_steps()),
)
def pipe(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[FILE|-]...",
            help="Documents, one per line; '-' reads stdin. With --ray: files, folders, globs or "
            "URIs (s3://, hdfs://, ...), as many as you like.",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            help=f"Comma-separated steps, run in this order: {', '.join(STEPS)}.",
            show_default=False,
        ),
    ] = None,
    settings: StepSettingOpt = None,
    output: OutputOpt = None,
    vectors: Annotated[
        str | None,
        typer.Option(
            "--vectors",
            help="Write the embed step's vectors here (.npy, row i = line i+1; a .json of settings "
            "beside it for 'zhtext similar') instead of into the JSONL.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of settings: steps, batch_size, device, and a [STEP] table of each "
            "step's settings. The command line wins over it; --steps narrows it to those steps.",
        ),
    ] = None,
    save_config: Annotated[
        Path | None,
        typer.Option(
            "--save-config", help="Write the run's full settings to this TOML file, then run."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Documents per batch through all steps; the models sort each batch by length, so "
            "bigger batches pad less (default: 1024).",
        ),
    ] = None,
    device: DeviceOpt = None,
    quantize: QuantizeOpt = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Stop at the first bad line (unreadable, empty, longer than a model's window) "
            "instead of reporting it at the end.",
        ),
    ] = False,
    encoding: EncodingOpt = None,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1.0,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
    fmt: Annotated[
        PartFormat,
        typer.Option("--format", help="With --ray: the parts' format (JSON lines or Parquet)."),
    ] = PartFormat.jsonl,
    quiet: QuietOpt = False,
) -> None:
    """Run several steps over each line in one pass, each model loaded once.

    Each input line gives one JSON record: {"line", "text", "words", "spans", "title", "generated", "vector"}, with the results of the steps that ran, as the standalone commands print them. A bad line is never dropped: an unreadable one is kept as a record with "error" (and a zero vector), an empty or too long one is processed as the standalone command does and gets "problems"; all are listed with their line numbers at the end. --strict stops at the first instead.

    Examples:

        zhtext pipe news.txt --steps segment,tag,embed --set tag.model=ner --set embed.model=bert-base-chinese --set embed.whitening=w.npz -o news.jsonl --vectors news.npy --save-config news.toml

        zhtext pipe more-news.txt --config news.toml -o more.jsonl --vectors more.npy

        zhtext pipe more-news.txt --config news.toml --steps segment -o words.jsonl

        zhtext pipe 'corpus/*.txt' --ray auto --config news.toml --gpus-per-worker 1 -o news-parts

    With --ray the output is a folder: part-00000.jsonl ... (one part per block of input, records
    with "source", the input file), and _SUCCESS with the counts, written last. Run it again into
    the same folder to finish a run that stopped: the parts done are kept.
    """
    from zhtext.io.progress import Bar
    from zhtext.io.writing import check_output
    from zhtext.pipeline import Lines, Pipeline, parse_assignments
    from zhtext.pipeline.run import save_settings

    given = {"steps": steps, "batch_size": batch_size, "device": device,
             "quantize": quantize and quantize.value, **parse_assignments(settings or [])}
    given = {k: v for k, v in given.items() if v is not None}  # only the options given
    sources = sources or ["-"]
    if ray is not None:
        _check_ray_run(sources, output, vectors)
        check_output(save_config)
    else:
        _check_local_run(sources, fmt, workers)
        # a missing or unreadable input fails before the models load
        lines = Lines(sources[0], encoding)
        for path in (output, vectors, save_config):  # and so does an output that cannot be written
            check_output(path)
    if ray is not None:  # the workers load the models; here the settings are only checked
        with warnings_as_lines():
            settings = Pipeline.settings_of(given.pop("steps", None), config, **given)
        save = functools.partial(save_settings, settings)
    else:
        status = console.status("loading models") if not quiet else contextlib.nullcontext()
        with status, warnings_as_lines():
            if config is not None:
                nlp = Pipeline.from_config(config, **given)
            else:
                nlp = Pipeline(given.pop("steps", None), **given)
        save = nlp.save_config
    if save_config is not None:
        save(save_config)
        if not quiet:
            console.print(f"[dim]settings saved to {escape(str(save_config))}[/]", highlight=False)
    if ray is not None:
        report = _run_on_ray(settings, sources, output, quiet, address=ray, workers=workers,
                             cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                             fmt=fmt.value, encoding=encoding, strict=strict)
        _summary(report, quiet)
        return
    with Bar(enabled=not quiet and output not in (None, "-"), unit="bytes") as bar:
        task = bar.add("+".join(nlp.settings["steps"]), total=lines.size)
        done = 0

        def advance(_doc: object, end: int) -> None:
            nonlocal done
            bar.advance(task, end - done)
            done = end

        report = nlp.run(lines, output, vectors, strict=strict, on_doc=advance)
    _summary(report, quiet)


def _check_ray_run(sources: list[str], output: str | None, vectors: str | None) -> None:
    """What a run on Ray cannot do, said before any work: it fails before Ray starts."""
    from zhtext.distributed.cluster import ray_module
    from zhtext.errors import ZhtextError
    from zhtext.io.splits import expand_inputs

    if "-" in sources:
        raise ZhtextError("--ray reads files, folders, globs or URIs, not stdin")
    if output is None or output == "-":
        raise ZhtextError("--ray writes a folder of parts: give -o DIR")
    if vectors is not None:
        raise ZhtextError("--vectors is for a local run; with --ray the vectors are in the records")
    ray_module()  # Ray missing: said before the models load
    expand_inputs(sources)  # and so is a missing input


def _check_local_run(sources: list[str], fmt: PartFormat, workers: int | None) -> None:
    from zhtext.errors import ZhtextError

    if len(sources) > 1:
        raise ZhtextError("pipe reads one input (a file or -); give --ray to read several")
    if fmt is not PartFormat.jsonl:
        raise ZhtextError("--format parquet writes the parts of a run on Ray: give --ray")
    if workers is not None:
        raise ZhtextError("--workers is an option of a run on Ray: give --ray")


def _run_on_ray(settings: dict, sources: list[str], output: str, quiet: bool,
                **options: object) -> Report:
    from zhtext.distributed.pipe import run_on_ray
    from zhtext.io.progress import Bar
    from zhtext.io.splits import expand_inputs, input_stamp

    total = sum(input_stamp(path)[0] for path in expand_inputs(sources))
    with Bar(enabled=not quiet, unit="bytes") as bar:
        task = bar.add("+".join(settings["steps"]), total=total)

        def advance(_stats: object, nbytes: int) -> None:
            bar.advance(task, nbytes)

        return run_on_ray(settings, sources, output, on_part=advance, **options)
