"""Benchmarks of statekit against its peers, measured side by side in one process.

Every module in this package whose name does not start with an underscore is a
benchmark module; `python -m bench` runs them all and `python -m bench NAME` runs
one. A benchmark module provides:

    DESCRIPTION: str                          one line for `python -m bench --list`
    def run(config: Config) -> Report: ...    measure and return rows and targets

This module holds what they share: the timing harness (`Case`, `measure`), the
result types (`Row`, `Target`, `Report`) and the plain-text table (`render`).

How a sample is timed: a case builds a fresh batch of inputs (not timed), then one
call runs the operation once per input in a plain `for` loop, timed with
`time.perf_counter_ns` with the garbage collector paused (as `timeit` does). A
sample is that time divided by the batch size; a row reports the median of
several samples. The batch size is calibrated per case so that one sample lasts
about `Config.sample_ms`, and samples of all cases are interleaved round by round.
"""

from __future__ import annotations

import gc
import math
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from time import perf_counter_ns
from typing import Any, TypeVar

__all__ = [
    "Case",
    "Config",
    "Measurement",
    "Report",
    "Row",
    "Target",
    "environment",
    "measure",
    "render",
]

T = TypeVar("T")

MIN_BATCH = 100
MAX_BATCH = 200_000
CALIBRATION_BATCH = 200


@dataclass(frozen=True, slots=True)
class Config:
    """How long and how often to measure.

    Attributes:
        samples: Samples per case; the median is reported.
        sample_ms: Target duration of one sample; sets the batch size.
    """

    samples: int = 7
    sample_ms: float = 20.0

    @classmethod
    def quick(cls) -> Config:
        """A short run for smoke tests: numbers are noisier."""
        return cls(samples=3, sample_ms=3.0)


@dataclass(frozen=True, slots=True)
class Measurement:
    """The per-operation times of one case, in nanoseconds."""

    median_ns: float
    samples_ns: tuple[float, ...]
    batch: int

    @property
    def spread(self) -> float:
        """(max - min) / median of the samples: how noisy the case was."""
        return (max(self.samples_ns) - min(self.samples_ns)) / self.median_ns


@dataclass(slots=True)
class Row:
    """One line of a report table.

    Attributes:
        group: Rows of one group share a table section and a ratio reference.
        library: Who does the work (`statekit`, `transitions (shared)`, ...).
        operation: What one op is, in the library's own terms.
        measurement: The timing.
        ratio: Median divided by the group's reference median, when there is one.
        delta_ns: Median minus a baseline row's median, for "cost beyond" rows.
        note: Short remark shown after the table.
    """

    group: str
    library: str
    operation: str
    measurement: Measurement
    ratio: float | None = None
    delta_ns: float | None = None
    note: str = ""

    @property
    def median_ns(self) -> float:
        """The median time per operation."""
        return self.measurement.median_ns


@dataclass(frozen=True, slots=True)
class Target:
    """A goal the benchmark checks, with the measured value and a verdict."""

    name: str
    goal: str
    measured: str
    passed: bool


@dataclass(slots=True)
class Report:
    """What one benchmark module measured.

    Attributes:
        name: The module's name (`core`, ...).
        groups: Section titles by group key, in display order, each with the
            sentence saying what its ratio column means.
        rows: Every measured case.
        targets: Checked goals.
        notes: Free lines printed under the table.
        environment: Versions of what was measured (see `environment`).
    """

    name: str
    groups: dict[str, tuple[str, str]]
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--json`."""
        return {
            "name": self.name,
            "groups": {
                key: {"title": title, "ratio": ratio} for key, (title, ratio) in self.groups.items()
            },
            "rows": [
                {
                    "group": r.group,
                    "library": r.library,
                    "operation": r.operation,
                    "median_ns": round(r.median_ns, 1),
                    "samples_ns": [round(s, 1) for s in r.measurement.samples_ns],
                    "batch": r.measurement.batch,
                    "ratio": None if r.ratio is None else round(r.ratio, 3),
                    "delta_ns": None if r.delta_ns is None else round(r.delta_ns, 1),
                    "note": r.note,
                }
                for r in self.rows
            ],
            "targets": [asdict(t) for t in self.targets],
            "notes": list(self.notes),
            "environment": dict(self.environment),
        }


def time_once(run: Callable[[list[T]], object], items: list[T]) -> int:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = perf_counter_ns()
        kept = run(items)  # freed after the clock stops: creation is timed, not teardown
        elapsed = perf_counter_ns() - start
        del kept
        return elapsed
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Case:
    """One measured operation.

    Attributes:
        group: The report section it belongs to.
        library: Who does the work.
        operation: What one operation is, in the library's own terms.
        make: Builds `n` inputs, each ready for one operation (not timed).
        run: Performs the operation once per input with its own `for` loop (timed).
            Whatever it returns is released after the clock stops.
        teardown: Called with each batch after it is timed (not timed).
    """

    group: str
    library: str
    operation: str
    make: Callable[[int], list[Any]]
    run: Callable[[list[Any]], object]
    teardown: Callable[[list[Any]], object] | None = None

    def sample(self, n: int) -> float:
        """Time one batch of `n` operations; return nanoseconds per operation."""
        items = self.make(n)
        elapsed = time_once(self.run, items)
        if self.teardown is not None:
            self.teardown(items)
        return elapsed / n

    def calibrate(self, config: Config) -> int:
        """Warm up, then pick the batch size that makes one sample last about
        `config.sample_ms`."""
        self.sample(CALIBRATION_BATCH)  # imports, caches, lazy binding
        per_op = max(self.sample(CALIBRATION_BATCH), 1.0)
        batch = math.ceil(config.sample_ms * 1e6 / per_op)
        return min(max(batch, MIN_BATCH), MAX_BATCH)


def measure(cases: Sequence[Case], config: Config) -> list[Measurement]:
    """Time every case, interleaved: each sampling round runs every case once, so
    a slow moment on a shared machine hits all of them alike and the ratios hold.

    Returns one `Measurement` per case, in order.
    """
    batches = [case.calibrate(config) for case in cases]
    rounds = [
        [case.sample(batch) for case, batch in zip(cases, batches, strict=True)]
        for _ in range(config.samples)
    ]
    measured = []
    for i, batch in enumerate(batches):
        samples = tuple(r[i] for r in rounds)
        measured.append(Measurement(statistics.median(samples), samples, batch))
    return measured


def _ns(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.0f} ns"


def _delta(value: float) -> str:
    return ("+" if value >= 0 else "-") + _ns(abs(value))


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def render(report: Report) -> str:
    """The report as a plain-text table, targets and notes."""
    headers = ("library", "operation", "median/op", "ratio", "beyond baseline")
    lines: list[str] = []
    body: list[tuple[str, ...] | str] = []
    for key, (title, ratio_meaning) in report.groups.items():
        rows = [r for r in report.rows if r.group == key]
        if not rows:
            continue
        body.append(f"{title}")
        body.append(f"  ratio = {ratio_meaning}")
        body.extend(
            (
                r.library,
                r.operation,
                _ns(r.median_ns),
                _ratio(r.ratio),
                "" if r.delta_ns is None else _delta(r.delta_ns),
            )
            for r in rows
        )
    cells = [b for b in body if isinstance(b, tuple)]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    numeric = {2, 3, 4}

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-" * len(fmt(headers))
    lines += [f"== bench {report.name} ==", fmt(headers), rule]
    for b in body:
        lines.append(b if isinstance(b, str) else fmt(b))
    lines.append(rule)
    for t in report.targets:
        verdict = "PASS" if t.passed else "MISS"
        lines.append(f"{verdict}  {t.name}: {t.measured} (target: {t.goal})")
    lines.extend(report.notes)
    return "\n".join(lines)


def environment(packages: Sequence[str]) -> dict[str, str]:
    """Python, platform and installed versions of `packages`, for reproducibility."""
    info = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    for name in packages:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "not installed"
    return info
