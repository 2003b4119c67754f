"""`python -m bench.sweep [--quick]`, `--profile DB` and (internal) `--worker URL`."""

from __future__ import annotations

import argparse
from contextlib import suppress

from bench import Config, render
from bench.sweep import run
from bench.sweep.processes import worker_main
from bench.sweep.profile import profile
from bench.sweep.schema import FULL, QUICK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=("postgresql", "sqlite"))
    parser.add_argument("--quick", action="store_true", help="100,000 rows / 1,000 overdue")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.profile:
        profile(args.profile, QUICK if args.quick else FULL, args.top)
        return 0
    print(render(run(Config.quick() if args.quick else Config())))
    return 0


if __name__ == "__main__":
    with suppress(BrokenPipeError):
        raise SystemExit(main())
