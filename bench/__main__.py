"""`python -m bench [NAME ...] [--json] [--quick]`: run benchmark modules.

Benchmark modules are the modules and subpackages of this package whose names do
not start with an underscore (see `bench/__init__.py` for what they provide); `core`
runs first, the others in name order.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import bench
from bench import Config, Report, environment

FIRST = ("core",)


def available() -> list[str]:
    """Names of the benchmark modules, `core` first."""
    names = [info.name for info in pkgutil.iter_modules(bench.__path__) if info.name[0] != "_"]
    return sorted(names, key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0, n))


def load(name: str) -> ModuleType:
    """Import `bench.<name>` and check it is a benchmark module."""
    module = importlib.import_module(f"bench.{name}")
    if not callable(getattr(module, "run", None)):
        raise SystemExit(f"bench.{name} has no run(config) function")
    return module


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of statekit against its peers, side by side in one run.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="modules to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--quick", action="store_true", help="short, noisier run (smoke test)")
    parser.add_argument("--samples", type=int, help="samples per case (median is reported)")
    parser.add_argument("--sample-ms", type=float, help="target duration of one sample")
    parser.add_argument("--list", action="store_true", help="list modules and exit")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected modules; print their tables (or JSON)."""
    args = parse(sys.argv[1:] if argv is None else argv)
    names = available()
    if args.list:
        for name in names:
            print(f"{name:12} {getattr(load(name), 'DESCRIPTION', '')}")
        return 0
    unknown = [n for n in args.names if n not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}")
        return 2
    config = Config.quick() if args.quick else Config()
    if args.samples is not None:
        config = Config(samples=max(1, args.samples), sample_ms=config.sample_ms)
    if args.sample_ms is not None:
        config = Config(samples=config.samples, sample_ms=args.sample_ms)

    reports: list[Report] = []
    for name in args.names or names:
        report: Report = load(name).run(config)
        reports.append(report)
        if not args.json:
            print(bench.render(report), flush=True)
            print()
    if args.json:
        document = {
            "environment": environment(()),
            "config": {"samples": config.samples, "sample_ms": config.sample_ms},
            "benchmarks": [r.to_json() for r in reports],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    missed = any(not t.passed for r in reports for t in r.targets)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
