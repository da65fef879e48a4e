"""Starting or joining the Ray cluster that ``--ray`` names, with one-line errors.

``address`` is ``local`` (start Ray on this machine with its cores), ``auto`` (join the cluster
that ``ray start`` runs here), ``HOST:PORT`` (a head node's GCS) or ``ray://HOST:PORT`` (Ray
Client). A Ray session that is already running in this process (a notebook, the test suite) is
used as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zhtext.errors import ZhtextError

__all__ = ["ADDRESS_HELP", "Cluster", "cluster", "is_address", "ray_module"]

ADDRESS_HELP = "local, auto, HOST:PORT or ray://HOST:PORT"
_HOST_PORT = re.compile(r"^(ray://)?\[?[A-Za-z0-9_.:-]+?\]?:(\d{1,5})$")


def is_address(value: str) -> bool:
    """Whether ``value`` reads as a Ray address (and not, say, a corpus path)."""
    return value in ("local", "auto") or bool(_HOST_PORT.match(value))


def ray_module() -> Any:
    """``import ray``, or one line saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ZhtextError("Ray is not installed: pip install 'zhtext[ray]'") from None
    return ray


@dataclass
class Cluster:
    """A Ray session in use: how many CPUs it offers, and how long it took to start or join."""

    ray: Any
    cpus: int
    start_s: float
    started_here: bool


def _reachable(address: str, timeout: float = 5.0) -> None:
    # ray.init() on an address nobody answers waits a minute or more, logging as it goes: try the
    # port first and say so in one line.
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ZhtextError(f"cannot reach the Ray cluster at {address}: {why}") from None


@contextlib.contextmanager
def cluster(
    address: str | None = "local",
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
) -> Iterator[Cluster]:
    """Start or join Ray for the duration of the block; see the module's docstring."""
    ray = ray_module()
    _quiet_ray()
    if ray.is_initialized():
        yield Cluster(ray, int(ray.cluster_resources().get("CPU", 1)), 0.0, False)
        return
    address = address or "local"
    if not is_address(address):
        raise ZhtextError(f"--ray takes {ADDRESS_HELP}, not {address!r}")
    began = time.perf_counter()
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                object_store_memory=object_store_memory,
                include_dashboard=False,
                **options,
            )
        else:
            if address != "auto":
                _reachable(address)
            ray.init(address=address, **options)
    except ZhtextError:
        raise
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZhtextError(f"cannot start or join Ray at {address}: {first}") from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        yield Cluster(ray, cpus, time.perf_counter() - began, True)
    finally:
        ray.shutdown()


def _quiet_ray() -> None:
    # Ray Data draws its own progress bars and logs each dataset's plan: zhtext draws one bar.
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    import warnings

    import ray.data

    with warnings.catch_warnings():  # Ray's own deprecations, raised by reading its settings
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray", "ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.ERROR)
