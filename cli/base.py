"""The Typer apps that every command module registers on, the options commands share (spelled
and explained once), the old spellings kept as hidden aliases, and the console."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from zhtext.distributed.cluster import ADDRESS_HELP, is_address
from zhtext.io.progress import stderr_console
from zhtext.io.writing import STDOUT, atomic_output, write_error
from zhtext.labels.formats import FORMATS as DATA_FORMATS
from zhtext.neural.scratch import SPECIAL_TOKENS


class Interrupted(Exception):
    """Ctrl-C inside a command, carried out to ``main()`` to be reported there.

    Typer turns a KeyboardInterrupt in a command into a silent exit 130, so ``main()`` would never
    see it; this exception passes Typer and click untouched.
    """


# Old option spellings that scripts may use, per command: kept working for one release, hidden
# from --help, with a warning the first time each is seen.
_ALIASES: dict[tuple[str, ...], dict[str, str]] = {}
_warned: set[str] = set()


def alias(command: str, old: str, new: str) -> None:
    """Accept ``old`` as a hidden, deprecated spelling of ``new`` on ``command`` ("train tagger").

    ``new`` may be an option and the start of its value, ``"--set tag.model="``: the old option's
    value is then appended to it (``--tag-model X`` becomes ``--set tag.model=X``)."""
    _ALIASES.setdefault(tuple(command.split()), {})[old] = new


def _rewrite_aliases(args: list[str]) -> list[str]:
    path = tuple(args[:2])
    table = _ALIASES.get(path) or _ALIASES.get(path[:1])
    if not table:
        return args
    out = []
    rest = iter(args)
    for arg in rest:
        name, eq, value = arg.partition("=")
        new = table.get(name) if arg.startswith("-") else None
        if arg == "--":
            table = {}  # everything after -- is an argument
        if new is None:
            out.append(arg)
            continue
        if name not in _warned:
            _warned.add(name)
            sys.stderr.write(f"zhtext: warning: {name} is deprecated, use {new}{'...' if ' ' in new else ''} "
                             "(the old spelling goes in the next release)\n")
        new, _, prefix = new.partition(" ")
        if prefix:  # the value joins the new option's fixed start (none left: click says so)
            value = value if eq else next(rest, None)
            out += [new] if value is None else [new, prefix + value]
        else:
            out.append(new + eq + value)
    return out


def _optional_ray_address(args: list[str]) -> list[str]:
    # --ray takes an optional address, which click cannot say: a bare --ray (last, or before
    # something that is no address, such as a corpus path) means a local Ray.
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--ray" and (i + 1 == len(out) or not is_address(out[i + 1])):
            out[i] = "--ray=local"
    return out


class _RootGroup(TyperGroup):
    """The root command group: every command runs inside its ``invoke``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _optional_ray_address(_rewrite_aliases(list(args))))

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            # Library code has already cleaned up on the way out (atomic outputs removed their
            # temporary files, training saved its checkpoint).
            raise Interrupted() from exc
        except OSError as exc:
            # A closed stdout pipe under a write that bypassed zhtext.io.writing (results go
            # through it, and name their path), caught before Typer makes it a silent exit 1.
            # Only stdout's can be shown: a closed stderr leaves no way to say anything. (Help
            # goes through rich, which ends on a broken pipe itself: status 1, silent.)
            if exc.errno != errno.EPIPE:
                raise
            raise write_error(STDOUT, exc) from None


app = typer.Typer(
    name="zhtext",
    cls=_RootGroup,
    help="Chinese NLP toolkit: word discovery, segmentation, tagging, titles, generation, embeddings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train a model (tagger, title, gpt, mlm, embed).", no_args_is_help=True)
evaluate_app = typer.Typer(help="Score output or a model against gold data.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

# transformers draws its own tqdm bar and warnings while loading weights; ours are enough on stderr.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# ---------------------------------------------------------------- ranges
# Every numeric option declares its range where it is defined: Typer's min= and max= for closed
# bounds, and these callbacks for the open ones Typer cannot say (a temperature above 0, a dropout
# below 1). cli/app.py turns either kind of error into "--option must be ..., got X" (exit 2).

MAX_SEED = 2**32 - 1  # numpy's limit (torch's is 2**64 - 1)


def above(low: float) -> Callable[[float | None], float | None]:
    """An option callback refusing values not above ``low`` (NaN too)."""
    def check(value: float | None) -> float | None:
        if value is not None and not value > low:
            raise typer.BadParameter(f"must be more than {low:g}, got {value:g}")
        return value

    return check


def below(high: float) -> Callable[[float | None], float | None]:
    """An option callback refusing values not below ``high`` (NaN too)."""
    def check(value: float | None) -> float | None:
        if value is not None and not value < high:
            raise typer.BadParameter(f"must be less than {high:g}, got {value:g}")
        return value

    return check


# ---------------------------------------------------------------- options many commands share

DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")
]
EncodingOpt = Annotated[
    str | None,
    typer.Option("--encoding", help="Input encoding (default: detect UTF-8 or GB18030)."),
]
# One rule for every command: -q silences progress bars, spinners and notes (summaries, timings,
# "saved to ..."); warnings about the data or the result ("zhtext: warning: ...", pipe's bad lines)
# and errors still show, as with pip and cargo. Results are never silenced.
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress bars, spinners or notes; warnings and errors still show.")]
OutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="Output file, written atomically (default: stdout).")
]
ModelOpt = Annotated[str, typer.Option(
    "-m", "--model", help="The model: a local folder or a hub id.", show_default=False)]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Texts run through the model together.")]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "-j",
        "--jobs",
        min=1,
        show_default="every core",
        help="Threads to work on; the output is the same for any number.",
    ),
]
class Quantize(str, Enum):
    int8 = "int8"


QuantizeOpt = Annotated[Quantize | None, typer.Option(
    "--quantize", show_default=False,
    help="int8: dynamic int8 linear layers for faster CPU inference (a small loss in accuracy).")]
OnnxOpt = Annotated[bool, typer.Option(
    "--onnx", help="Run the model with onnxruntime: -m is a folder 'zhtext export onnx' wrote "
    "(such a folder runs so without --onnx too; --onnx insists on one). CPU only.")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", metavar="[ADDRESS]", show_default=False,
    help=f"Run on Ray. Alone: a local Ray on this machine's cores; or join a cluster: {ADDRESS_HELP} "
    "(auto: the one `ray start` runs here).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, show_default="the cluster's CPUs", help="With --ray: workers to run at once.")]
CpusPerWorkerOpt = Annotated[float, typer.Option(
    "--cpus-per-worker", min=0.01, help="With --ray: CPUs each worker reserves.")]
GpusPerWorkerOpt = Annotated[float, typer.Option(
    "--gpus-per-worker", min=0.0, help="With --ray: GPUs each model worker reserves (0: CPU only).")]
InputFormat = Enum("InputFormat", {name: name for name in DATA_FORMATS}, type=str)  # the tagger's
InputFormatOpt = Annotated[InputFormat, typer.Option(
    "--input-format", help="Format of the input data (auto: detect from the file).")]
NBestOpt = Annotated[int, typer.Option("--n-best", min=1, help="Also give the N best analyses, with probabilities.")]
NeighboursOpt = Annotated[int, typer.Option("-k", "--neighbours", min=1, help="Nearest neighbours per query.")]
# A pipeline step's setting (zhtext pipe, zhtext serve): each step's settings are listed in the
# epilog of 'zhtext pipe --help'.
StepSettingOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="STEP.NAME=VALUE", show_default=False,
    help="A step's setting, e.g. --set tag.model=ner (repeatable; each step's settings are listed "
    "in 'zhtext pipe --help'). An empty value unsets an optional one.")]


class TextFormat(str, Enum):
    """``--format`` of a command that writes one record per input line."""

    text = "text"
    jsonl = "jsonl"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object instead of a table.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Score only the first N examples.")]
HmmOpt = Annotated[bool, typer.Option(
    "--hmm/--no-hmm", help="Find words missing from the dictionary (names...) with jieba's HMM, as "
    "jieba.cut does by default; --no-hmm keeps to the dictionary route (jieba's HMM=False).")]
DictOpt = Annotated[Path | None, typer.Option(
    "--dict", show_default=False,
    help="Dictionary: a discovered TSV lexicon or a jieba-format dict (default: jieba's own dict.txt).")]
LexiconOpt = Annotated[str | None, typer.Option(
    "--lexicon", show_default=False,
    help="Lexicon: a discovered TSV (zhtext discover), a jieba-format dict, or 'jieba' for "
    "jieba's own dict.txt.")]
UserDictOpt = Annotated[
    Path | None,
    typer.Option(
        "--user-dict",
        help="jieba user dictionary ('word \\[count] \\[tag]' lines, UTF-8 or GB18030) added on "
        "top; a line jieba would misread (a tab, a count like 3.5, a tag like NR) stops with "
        "FILE:LINE.",
    ),
]

# ---------------------------------------------------------------- decoding (titles, generation)

BeamOpt = Annotated[int | None, typer.Option(
    "--beam", min=1, help="Beam search of this width (1: no beam search) [default: the model's].")]
MaxNewTokensOpt = Annotated[int, typer.Option("--max-new-tokens", min=0, help="Most tokens to generate.")]
MinNewTokensOpt = Annotated[int | None, typer.Option(
    "--min-new-tokens", min=0, help="Fewest tokens to generate (the end token is banned before) "
    "[default: the model's: 1 for titles, 0 for generation].", show_default=False)]
SampleOpt = Annotated[bool | None, typer.Option(
    "--sample/--greedy", help="Sample tokens, or take the likeliest [default: the model's].", show_default=False)]
TopKOpt = Annotated[int, typer.Option("--top-k", min=0, help="Sampling: keep the K likeliest tokens (0: all).")]
TopPOpt = Annotated[float, typer.Option(
    "--top-p", max=1, callback=above(0),
    help="Sampling: keep the likeliest tokens whose probabilities sum to P, 0 < P <= 1 (1: all).")]
TemperatureOpt = Annotated[float, typer.Option(
    "--temperature", callback=above(0), help="Sampling: divide the logits by T (T > 0).")]
RepetitionPenaltyOpt = Annotated[float, typer.Option(
    "--repetition-penalty", callback=above(0),
    help="Above 1 makes tokens already present less likely (1: off; must be above 0).")]
NoRepeatNgramOpt = Annotated[int | None, typer.Option(
    "--no-repeat-ngram", min=0, help="Never repeat N tokens in a row within one output (0: off) "
    "[default: the model's: 3 for titles, off for generation].", show_default=False)]
LengthPenaltyOpt = Annotated[float, typer.Option(
    "--length-penalty", help="Beam search: scores are divided by length ** P.")]
DecodeSeedOpt = Annotated[int | None, typer.Option(
    "--seed", min=0, max=MAX_SEED, help="Sampling: random seed (reproducible output).")]


def decode_options(model_cls: Any, params: dict[str, Any]) -> Any:
    """The DecodeConfig of a title or generate command: its options named as the config's fields
    (``--num`` is ``num_return``), None meaning the model's default; a bad value fails before
    anything is read or loaded. Two options that contradict each other are named here, as typed;
    the library checks every value again."""
    given = {k: v for k, v in params.items() if v is not None}
    if given.get("min_new_tokens", 0) > given.get("max_new_tokens", float("inf")):
        raise typer.BadParameter(f"--min-new-tokens ({given['min_new_tokens']}) cannot exceed "
                                 f"--max-new-tokens ({given['max_new_tokens']})")
    if given.get("num", 1) > given.get("beam", 1) > 1:
        raise typer.BadParameter(f"--num ({given['num']}) cannot exceed --beam ({given['beam']}): "
                                 "beam search returns the best of its beams")
    if given.get("sample") and given.get("beam", 1) > 1:
        raise typer.BadParameter("--sample and --beam do not mix: choose one")
    if "num" in given:
        given["num_return"] = given.pop("num")
    names = {field.name for field in fields(model_cls.decoding)}
    return model_cls.decode_config(**{k: v for k, v in given.items() if k in names})


# ---------------------------------------------------------------- training (every trainer)

TrainDataOpt = Annotated[str, typer.Option("--train", help="Training data file.", show_default=False)]
DevDataOpt = Annotated[str | None, typer.Option(
    "--dev", help="Dev data: scored after each epoch, the best model is kept.")]
ModelDirOpt = Annotated[str, typer.Option(
    "-o", "--output", help="Folder for the model (Hugging Face layout + zhtext.json); the best "
    "model is kept there.", show_default=False)]
StartModelOpt = Annotated[str | None, typer.Option(
    "-m", "--model", help="Start from this checkpoint: a hub id or a folder.")]
FromScratchOpt = Annotated[bool, typer.Option(
    "--from-scratch", help="Start from a small random model over the training characters.")]
LayersOpt = Annotated[int, typer.Option("--layers", min=1, help="From scratch: transformer layers.")]
HiddenOpt = Annotated[int, typer.Option(
    "--hidden", min=1, help="From scratch: hidden size (heads = hidden / 64, at least 1).")]
MaxVocabOpt = Annotated[int | None, typer.Option(
    "--max-vocab", min=len(SPECIAL_TOKENS),
    help=f"From scratch: keep only the most frequent characters ({len(SPECIAL_TOKENS)} special "
    "tokens included).")]
HeldoutEveryOpt = Annotated[int | None, typer.Option(
    "--heldout-every", min=2, help="Hold out every N-th line of the text as dev data: training "
    "uses the rest, 'evaluate gpt' scores only those lines.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training data.")]
LrOpt = Annotated[float | None, typer.Option(
    "--lr", callback=above(0),
    help="Peak learning rate (default: smaller for a pretrained model than from scratch).")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", min=0, max=MAX_SEED, help="Random seed (initial weights, shuffling, dropout).")]
MaxSecondsOpt = Annotated[float | None, typer.Option(
    "--max-seconds", min=0, help="Stop after this many seconds of training in all, a resumed run "
    "counting the time already spent (the learning rate decays over the budget).")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps.")]
GradAccumOpt = Annotated[int, typer.Option("--grad-accum", min=1, help="Batches per optimizer step.")]
EmaOpt = Annotated[float, typer.Option(
    "--ema", min=0, callback=below(1), help="Score and keep a moving average of the weights with "
    "this decay (e.g. 0.999; 0: off): it smooths the last steps' noise.")]
EvalEveryOpt = Annotated[int | None, typer.Option("--eval-every", min=1, help="Also score the dev data every N steps.")]
DevLimitOpt = Annotated[int | None, typer.Option("--dev-limit", min=1, help="Score only the first N dev examples.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from OUTPUT/checkpoint.")]
KeepCheckpointOpt = Annotated[bool, typer.Option(
    "--keep-checkpoint", help="Keep OUTPUT/checkpoint when the run completes (to --resume it later "
    "with more epochs or steps); by default it is removed.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Save into OUTPUT even if it holds other files or another model (files of "
    "the same names are replaced), or start again over its checkpoint.")]


def check_model_or_scratch(model: str | None, from_scratch: bool) -> None:
    """A trainer starts from exactly one of a checkpoint and nothing."""
    if (model is None) == (not from_scratch):
        from zhtext.errors import ZhtextError

        raise ZhtextError("give either -m/--model NAME_OR_DIR or --from-scratch")


# Results go to stdout; progress, tables and messages to stderr so pipes stay clean. Every console
# is made by stderr_console: a message is one line, however long, wherever stderr goes.
console = stderr_console()


def echo(text: str) -> None:
    """A result on stdout through the one writer: a closed pipe or a full disk is one error line."""
    with atomic_output(None) as out:
        out.write(text + "\n")


def warn(message: object) -> None:
    """One ``zhtext: warning: ...`` line on stderr."""
    console.print(f"zhtext: warning: {message}", markup=False, highlight=False)


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show the library's data warnings (e.g. a dropped nested entity) as one plain line each, as
    they happen."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        warn(message)

    with warnings.catch_warnings():
        warnings.showwarning = show
        # Every data warning of zhtext's own, even one seen before in this process.
        warnings.filterwarnings("always", module=r"zhtext\.")
        yield


def train_model(model_cls: Any, config_cls: Any, params: dict[str, Any], label: str) -> None:
    """The body of every ``zhtext train`` command: the settings from the command's parameters
    (named as the config's fields; a bad one fails before anything is read), training with data
    warnings as lines, and a one-line summary of the best model."""
    check_model_or_scratch(params.get("model"), params.get("from_scratch", False))
    names = {field.name for field in fields(config_cls)}
    settings = {k: v.value if isinstance(v, Enum) else v for k, v in params.items() if k in names}
    quiet = bool(params.get("quiet"))
    config = config_cls(**settings, progress=not quiet)
    with warnings_as_lines():
        model = model_cls.train(config)
    best = model.meta.get("best") or {}
    summary = f"model saved to {config.output}"
    if model_cls.metric in best:
        summary += f" (best dev {label} {best[model_cls.metric]:.4f} at epoch {best['epoch']})"
    if not quiet:
        console.print(summary)
