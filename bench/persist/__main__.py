"""`python -m bench.persist --profile DB` and (internal) `--django-worker DATABASE_JSON KIND`."""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Sequence

from bench.persist.django_worker import serve
from bench.persist.profile import profile
from bench.persist.workload import DATABASES


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.persist --profile DB` or (internal) `--django-worker DATABASE_JSON KIND`."""
    parser = argparse.ArgumentParser(prog="python -m bench.persist")
    parser.add_argument("--profile", choices=sorted(DATABASES), help="profile statekit vs Core")
    parser.add_argument("--entities", type=int, default=100, help="entities to profile")
    parser.add_argument(
        "--django-worker", nargs=2, metavar=("DATABASE_JSON", "KIND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.django_worker:
        database, kind = args.django_worker
        serve(json.loads(database), kind)
        return 0
    if args.profile:
        gc.collect()
        print(profile(args.profile, args.entities))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
