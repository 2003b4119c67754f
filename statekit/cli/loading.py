"""Find the machines and mapped entity classes declared in the modules a command names."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

from statekit.declare import Workflow
from statekit.engine import Machine
from statekit.errors import StatekitError

__all__ = ["Loaded", "import_module", "load_modules", "resolve_machine"]


@dataclass
class Loaded:
    """What the named modules declare."""

    machines: dict[str, Machine] = field(default_factory=dict)
    entities: dict[Machine, type] = field(default_factory=dict)


def import_module(name: str) -> ModuleType:
    """Import `name` as `python -m` would: the current directory comes first on the
    path, so a project's own modules are found when the CLI runs from its folder."""
    if name.startswith("."):
        raise StatekitError(
            f"{name!r} is a relative module name; name the module from the project's top "
            f"package (e.g. shop.models)"
        )
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise StatekitError(
                f"module {name!r} not found in {here} or on PYTHONPATH (run the command from "
                f"the project's folder, or set PYTHONPATH)"
            ) from exc
        raise


def load_modules(names: list[str]) -> Loaded:
    """Import `names` and collect Workflow machines, `Machine` objects and classes
    that declare `__statekit_machine__` (the mapped classes that store them)."""
    loaded = Loaded()
    for name in names:
        module = import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Workflow) and value is not Workflow:
                if getattr(value, "machine", None) is not None:
                    loaded.machines.setdefault(value.machine.name, value.machine)
            elif isinstance(value, Machine):
                loaded.machines.setdefault(value.name, value)
            if isinstance(value, type):
                machine = vars(value).get("__statekit_machine__")
                if isinstance(machine, Machine):
                    loaded.machines.setdefault(machine.name, machine)
                    loaded.entities[machine] = value
    return loaded


def resolve_machine(spec: str) -> Machine:
    """Resolve `module:attr` to a compiled machine: a Workflow class, a Machine, or a
    mapped class with `__statekit_machine__`."""
    module_name, _, attribute = spec.partition(":")
    module = import_module(module_name)
    if not attribute:
        machines = load_modules([module_name]).machines
        if len(machines) != 1:
            raise StatekitError(
                f"module {module_name!r} declares {len(machines)} machines "
                f"({', '.join(sorted(machines)) or 'none'}); name one as MODULE:ATTR"
            )
        return next(iter(machines.values()))
    value = getattr(module, attribute, None)
    if isinstance(value, type) and issubclass(value, Workflow):
        return value.machine
    if isinstance(value, Machine):
        return value
    stored = vars(value).get("__statekit_machine__") if isinstance(value, type) else None
    if isinstance(stored, Machine):  # a mapped class that stores the machine's instances
        return stored
    raise StatekitError(
        f"{spec!r} is not a Workflow class, a Machine or a class with __statekit_machine__"
    )
