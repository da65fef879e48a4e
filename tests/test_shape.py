"""The shape of the toolkit: layer rules, the public API, one CLI vocabulary."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

PACKAGE = Path(__file__).resolve().parents[1] / "zhtext"
CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"

# What each layer may import from zhtext (DESIGN.md section 1; ARCHITECTURE.md): the layers below.
ALLOWED = {
    "io": {"errors", "io"},
    "lexical": {"errors", "io", "lexical"},
    "labels": {"errors", "io", "labels"},
    "eval": {"errors", "eval"},
    "neural": {"errors", "io", "lexical", "labels", "eval", "neural"},
    "tasks": {"errors", "io", "lexical", "labels", "eval", "neural", "tasks"},
    "pipeline": {"errors", "io", "lexical", "labels", "eval", "neural", "tasks", "pipeline"},
    "distributed": {"errors", "io", "lexical", "labels", "eval", "neural", "tasks", "pipeline",
                    "distributed"},
    "serving": {"errors", "io", "lexical", "labels", "eval", "neural", "tasks", "pipeline", "serving"},
}
TORCH_FREE = ("io", "lexical", "labels", "eval")


def _modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def _zhtext_imports(path: Path) -> set[str]:
    """The zhtext layers a module imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute zhtext.* imports")
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "zhtext" and len(parts) > 1 and parts[1] != "__version__":
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    modules = _modules(layer)
    assert modules, f"zhtext/{layer} is empty"
    for path in modules:
        wrong = _zhtext_imports(path) - ALLOWED[layer]
        assert not wrong, f"{path.relative_to(PACKAGE.parent)} imports zhtext.{sorted(wrong)}"


def test_the_lower_layers_load_without_torch_or_transformers():
    names = [f"zhtext.{layer}.{p.stem}" for layer in TORCH_FREE for p in _modules(layer)
             if p.stem != "__init__"]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == []
    assert len(names) > 15  # the test really walked the layers


def test_import_zhtext_is_light():
    code = "import sys, zhtext; print(sorted(m for m in sys.modules if m.startswith(('torch', 'numba'))))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_the_command_line_builds_without_its_libraries():
    """``zhtext --help`` (every command's options declared) loads no kernels and no models: each
    command imports its library when it runs."""
    code = ("import sys\nfrom zhtext_cli import app\nassert app.app.registered_commands\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'numba', 'torch', 'transformers', 'ray', 'fastapi', 'onnxruntime'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_every_public_name_resolves_and_is_documented():
    import zhtext

    for name in zhtext.__all__:
        if name == "__version__":
            continue
        value = getattr(zhtext, name)
        assert (getattr(value, "__doc__", None) or "").strip(), f"zhtext.{name} has no docstring"
    assert {"Tagger", "TitleGenerator", "TextGenerator", "Embedder", "discover", "Segmenter",
            "Lexicon", "Pipeline", "Doc", "Span", "SegScore", "PRF", "cut", "lcut"} <= set(zhtext.__all__)
    # plumbing stays out of the top level
    assert not {"iter_lines", "atomic_output", "load_model", "load_tokenizer"} & set(zhtext.__all__)


def test_the_four_model_classes_share_one_api():
    import inspect

    import zhtext
    from zhtext.tasks.base import Model

    for cls in (zhtext.Tagger, zhtext.TitleGenerator, zhtext.TextGenerator, zhtext.Embedder):
        assert issubclass(cls, Model), cls
        for verb in ("load", "save", "predict", "evaluate", "train"):
            assert getattr(cls, verb) is not getattr(Model, verb), f"{cls.__name__}.{verb} is not implemented"
        params = inspect.signature(cls.load).parameters
        assert params["device"].kind is inspect.Parameter.KEYWORD_ONLY, cls
        assert params["batch_size"].kind is inspect.Parameter.KEYWORD_ONLY, cls
        config = inspect.signature(cls.train).parameters
        assert list(config) == ["config"], (cls, list(config))


def test_cut_and_lcut_match_jieba_with_and_without_hmm():
    jieba = pytest.importorskip("jieba")
    import zhtext

    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines()[:300] if line]
    lines += ["2026年12月2日，北京大学的学生在清华大学学习自然语言处理。", "", "Hello, 世界 42!"]
    for line in lines:
        assert zhtext.lcut(line) == jieba.lcut(line), line
        assert zhtext.lcut(line, hmm=False) == jieba.lcut(line, HMM=False), line
        assert list(zhtext.cut(line)) == zhtext.lcut(line)


def _commands():
    import typer.main

    from zhtext_cli.app import app

    root = typer.main.get_command(app)

    def walk(group, path):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, [*path, name])
            else:
                yield " ".join([*path, name]), cmd

    return list(walk(root, []))


def test_one_cli_vocabulary():
    seen = 0
    for path, cmd in _commands():
        # -q on every command, one rule (cli/base.py: QuietOpt), so a script can pass it to any
        quiet = [param for param in cmd.params if param.name == "quiet"]
        assert quiet and set(quiet[0].opts) == {"-q", "--quiet"}, path
        for param in cmd.params:
            opts = set(param.opts)
            if param.name == "output":
                assert {"-o", "--output"} <= opts, (path, opts)
                seen += 1
            if param.name == "model":
                assert {"-m", "--model"} <= opts, (path, opts)
            assert "--out" not in opts, (path, opts)
            if "--top-k" in opts:  # sampling only: n-best and neighbours have their own names
                assert path in {"title", "generate"}, path
            if "--format" in opts and path.startswith("train "):
                raise AssertionError(f"{path}: --format is an output format; use --input-format")
    assert seen >= 8


def test_an_old_spelling_works_and_warns_once(monkeypatch, capsys, tmp_path):
    from zhtext_cli import base

    monkeypatch.setattr(base, "_warned", set())
    src = tmp_path / "in.txt"
    src.write_text("我爱北京天安门\n", encoding="utf-8")
    for n in range(2):
        out = tmp_path / f"o{n}.txt"
        code, _, err = run_cli(monkeypatch, capsys, "segment", str(src), f"--out={out}" if n else "--out",
                               *([] if n else [str(out)]), "-q")
        assert code == 0, err
        assert out.read_text(encoding="utf-8") == "我 爱 北京 天安门\n"
        assert err.count("--out is deprecated, use --output") == (1 if n == 0 else 0), err
    # an argument that merely looks like the flag is left alone after --
    code, _, err = run_cli(monkeypatch, capsys, "segment", "-q", "--", "--out")
    assert code == 1 and "--out" in err and "deprecated" not in err
