"""Shared fixtures: where the shared evaluation data lives (absent on a fresh clone)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (fresh clone)")
    return SHARED_DATA


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``zhtext`` in-process through its real entry point; return (exit code, stdout, stderr)."""
    from zhtext_cli.app import main

    monkeypatch.setattr(sys, "argv", ["zhtext", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def sigint_as_usual() -> None:
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default action.

    A shell starts background jobs with SIGINT ignored, children inherit that, and Python then
    installs no KeyboardInterrupt handler: the suite run with ``&`` would see the signal vanish.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def jieba_force_split():
    """jieba keeps the words given a count of 0 in one global set that every Tokenizer's HMM
    obeys (``jieba.finalseg.Force_Split_Words``): tests that delete words get it back as it was."""
    from jieba import finalseg

    saved = set(finalseg.Force_Split_Words)
    yield finalseg.Force_Split_Words
    finalseg.Force_Split_Words.clear()
    finalseg.Force_Split_Words.update(saved)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, a small object store), shut down at its
    end; zhtext's ``cluster()`` finds it running and uses it as it is. Skips where Ray is absent."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from zhtext.distributed.cluster import _quiet_ray

    _quiet_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
