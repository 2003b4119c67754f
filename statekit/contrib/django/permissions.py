"""The permissions the admin checks (`statekit_permissions`, for a model's
``Meta.permissions``). Imports no Django module, so a models module can use it."""

from __future__ import annotations

from typing import Any

from statekit.engine import Machine

__all__ = ["statekit_permissions"]


def statekit_permissions(machine: Machine | Any, model_name: str) -> list[tuple[str, str]]:
    """The permissions `StateModelAdmin` checks: ``fire_<event>_<model_name>`` per
    event, ``retry_<model_name>`` and ``resolve_<model_name>``.

    Args:
        machine: A `Machine`, or a `Workflow` class (its ``machine``).
        model_name: The model's lower-case name (``Meta.model_name``).
    """
    compiled: Machine = machine if isinstance(machine, Machine) else machine.machine
    found = [
        (f"fire_{event}_{model_name}", f"Can fire {event} on {model_name}")
        for event in compiled.events
    ]
    found.append((f"retry_{model_name}", f"Can retry the compensations of a {model_name}"))
    found.append((f"resolve_{model_name}", f"Can resolve a stuck {model_name} by hand"))
    return found
