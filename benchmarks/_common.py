"""Shared helpers of the benchmark scripts: timing and JSON output (with where it was measured)."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from locdistill.benchmark import environment


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1, cuda: bool = False
) -> dict[str, dict[str, float]]:
    """Time several functions round-robin (one call of each per round), so that background load on a
    shared machine hits them alike; per function: seconds (median, min, max) over ``repeats`` rounds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {
        name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats": repeats}
        for name, ts in times.items()
    }


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1, cuda: bool = False) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times, then ``repeats`` timed times; seconds (median, min, max)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": repeats,
    }


def write_results(
    path: str | os.PathLike[str] | None, name: str, results: Any, **extra: Any
) -> dict[str, Any]:
    """Bundle ``results`` with :func:`locdistill.benchmark.environment` (where it was measured), print
    it as JSON and write it to ``path`` (if any)."""
    payload = {"benchmark": name, "machine": environment(), **extra, "results": results}
    text = json.dumps(payload, indent=2)
    print(text)
    if path is not None:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    return payload
