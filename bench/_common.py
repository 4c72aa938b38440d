"""Shared helpers for the benchmark scripts: timing and CSV result rows.

Every script times compilation apart from steady state, blocks on device
results before stopping a clock, and appends one row per measurement to
``bench/results.csv`` together with the machine it ran on, so that the README
table can be rebuilt from the file.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax

RESULTS = Path(__file__).with_name("results.csv")
FIELDS = ["date", "bench", "case", "value", "unit", "device", "cpus", "note"]


def device_kind() -> str:
    """The JAX default device in words, e.g. ``cpu`` or ``NVIDIA H200``."""
    device = jax.devices()[0]
    return device.device_kind if device.platform != "cpu" else "cpu"


def machine() -> str:
    """A short description of the host: processor and core count."""
    return f"{platform.machine()} x{os.cpu_count()}"


def timeit(fn: Callable[[], object], *, repeat: int = 5) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeat`` runs.

    ``fn`` must block until its result is ready (``block_until_ready`` for
    JAX arrays), otherwise only the dispatch is timed.
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def record(bench: str, case: str, value: float, unit: str, note: str = "") -> None:
    """Print a result and append it as one row of ``bench/results.csv``."""
    row = {
        "date": datetime.date.today().isoformat(),
        "bench": bench,
        "case": case,
        "value": f"{value:.6g}",
        "unit": unit,
        "device": device_kind(),
        "cpus": machine(),
        "note": note,
    }
    print(f"{bench:>10} | {case:<40} | {row['value']:>12} {unit} {note}")
    new = not RESULTS.exists()
    with RESULTS.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
