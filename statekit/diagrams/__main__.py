"""Regenerate (or check) the diagrams of every workflow in a models package.

    python -m statekit.diagrams            # write diagrams/<machine>.{dot,mmd,svg}
    python -m statekit.diagrams --check    # exit 1, listing stale files, if any

Workflows are the `statekit.Workflow` subclasses defined in the modules of the
package (``models`` by default, imported from the current directory).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from statekit.declare import Workflow
from statekit.diagrams.render import stale_diagrams, write_diagrams
from statekit.engine import Machine
from statekit.errors import StatekitError

__all__ = ["find_machines", "main"]


def find_machines(package: str) -> list[Machine]:
    """Import `package` and its modules; return the machine of every `Workflow`
    subclass defined there, sorted by machine name.

    Raises:
        ImportError: the package or one of its modules cannot be imported.
    """
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.iter_modules(getattr(root, "__path__", []), prefix=f"{package}."):
        modules.append(importlib.import_module(info.name))
    found: dict[str, Machine] = {}
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Workflow)
                and value is not Workflow
                and value.__module__ == module.__name__
            ):
                found[value.machine.name] = value.machine
    return [found[name] for name in sorted(found)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m statekit.diagrams",
        description="Regenerate the SVG, DOT and Mermaid diagrams of every workflow.",
    )
    parser.add_argument("--models", default="models", help="package holding the workflows")
    parser.add_argument("--out", default="diagrams", help="directory of generated diagrams")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is stale"
    )
    parser.add_argument("--force", action="store_true", help="rewrite every file")
    args = parser.parse_args(argv)
    machines = find_machines(args.models)
    if not machines:
        print(f"no workflows found in package {args.models!r}", file=sys.stderr)
        return 1
    if args.check:
        stale = stale_diagrams(machines, args.out)
        if stale:
            print("stale diagrams (run 'make diagrams'):", file=sys.stderr)
            for path in stale:
                print(f"  {path}", file=sys.stderr)
            return 1
        print(f"{len(machines)} machines, diagrams up to date")
        return 0
    try:
        written = write_diagrams(machines, args.out, force=args.force)
    except StatekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
