"""`python -m bench.drain --worker URL CONCURRENCY SECONDS`: one drain sweeper process
(the benchmark itself runs as `python -m bench drain`)."""

from __future__ import annotations

import sys

from bench.drain.processes import worker_main

if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "--worker":
        raise SystemExit("usage: python -m bench.drain --worker URL CONCURRENCY SECONDS")
    raise SystemExit(worker_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
