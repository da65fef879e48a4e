"""The output folder of a sharded run: its parts, the run it belongs to, and its manifest.

``DIR/part-00000.jsonl`` ... (or ``.parquet``) hold the records, one part per input split, each
written whole or not at all; ``DIR/_RUN.json`` says which run the folder belongs to (the inputs
with their sizes and times, the settings, the format, the split size), written before any part;
``DIR/_SUCCESS`` is written last, with the counts of every part. A run into a folder that holds
the same run resumes it (the parts present are complete, so only the missing ones are run); a
folder that holds another run, or other files, is refused: two runs never mix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from zhtext.errors import ZhtextError
from zhtext.io.splits import Split, input_stamp
from zhtext.io.writing import atomic_output
from zhtext.pipeline.parts import PartStats, part_name

__all__ = ["MANIFEST", "RUN_FILE", "check_output_folder", "claim_output_folder", "run_identity",
           "write_manifest"]

RUN_FILE = "_RUN.json"
MANIFEST = "_SUCCESS"
_PART = re.compile(r"part-(\d{5,})\.(jsonl|parquet)")


def run_identity(
    paths: Sequence[str], splits: Sequence[Split], settings: dict[str, Any], fmt: str,
    encoding: str | None, split_bytes: int,
) -> dict[str, Any]:
    """What makes two runs the same run: equal identities give equal parts."""
    from zhtext import __version__

    identity = {
        "zhtext": __version__,
        "inputs": [[path, *input_stamp(path)] for path in paths],
        "splits": len(splits),
        "split_bytes": split_bytes,
        "encoding": encoding,
        "format": fmt,
        "settings": settings,
    }
    return json.loads(json.dumps(identity))  # as it reads back from the file


def check_output_folder(directory: str | os.PathLike, identity: dict[str, Any]) -> set[int] | None:
    """The indices of the parts ``directory`` holds of the run ``identity`` (a run resumed), or
    None when it is new or empty. Refuses, in one line, a folder of another run or of other
    files, and a path that is a file. Writes nothing: see :func:`claim_output_folder`."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ZhtextError(f"{directory} is a file; a sharded run writes a folder of parts")
    if not os.path.isdir(directory):
        return None
    try:
        names = [n for n in os.listdir(directory) if not n.startswith(".")]
    except OSError as exc:
        raise ZhtextError(f"cannot read {directory}: {exc.strerror or exc}") from None
    if RUN_FILE not in names:
        if names:
            raise ZhtextError(f"{directory} is not empty and holds no zhtext run; give a new or "
                              "empty folder")
        return None
    try:
        with open(os.path.join(directory, RUN_FILE), encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, ValueError):
        stored = None
    if stored != identity:
        stored = stored if isinstance(stored, dict) else {}
        differ = [key for key in identity if stored.get(key) != identity[key]]
        what = ", ".join(differ) or "record"
        raise ZhtextError(f"{directory} holds the output of another run (its {what} differ); "
                          "give a new folder, or remove this one to start again")
    done = set()
    for name in names:
        match = _PART.fullmatch(name)
        if match and match.group(2) == identity["format"]:
            done.add(int(match.group(1)))
    return done


def claim_output_folder(directory: str | os.PathLike, identity: dict[str, Any]) -> None:
    """Make the folder (and its parents) and write ``_RUN.json`` before the first part."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ZhtextError(f"cannot write {directory}: {exc.strerror or exc}") from None
    with atomic_output(os.path.join(directory, RUN_FILE)) as out:
        json.dump(identity, out, ensure_ascii=False, indent=1)


def write_manifest(
    directory: str | os.PathLike, identity: dict[str, Any], parts: Sequence[PartStats]
) -> dict[str, Any]:
    """Write ``_SUCCESS``: the run's counts in all and part by part (in index order); returns it."""
    parts = sorted(parts, key=lambda p: p.index)
    manifest = {
        "parts": len(parts),
        "docs": sum(p.docs for p in parts),
        "errors": sum(len(p.errors) for p in parts),
        "problem_lines": sum(len({line for line, *_ in p.problems}) for p in parts),
        "format": identity["format"],
        "steps": identity["settings"].get("steps"),
        "inputs": [path for path, *_ in identity["inputs"]],
        "files": [
            {"file": part_name(p.index, identity["format"]), "source": p.source, "docs": p.docs,
             "first_line": p.first, "last_line": p.last, "errors": len(p.errors),
             "problem_lines": len({line for line, *_ in p.problems})}
            for p in parts
        ],
    }
    with atomic_output(os.path.join(os.fspath(directory), MANIFEST)) as out:
        json.dump(manifest, out, ensure_ascii=False, indent=1)
    return manifest
