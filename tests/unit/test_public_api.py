"""The public API is pinned: adding or removing a name is a deliberate change here."""

from __future__ import annotations

import inspect

import statekit

PUBLIC = [
    "Backoff",
    "Clock",
    "CompensationContext",
    "CompensationError",
    "CompensationTask",
    "CompensationTimeoutError",
    "ConcurrentTransitionError",
    "Context",
    "DefinitionError",
    "DefinitionFormatError",
    "DefinitionMismatchError",
    "Event",
    "GuardRejectedError",
    "Handler",
    "IdempotencyConflictError",
    "InstanceNotFoundError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidPayloadError",
    "Listener",
    "Machine",
    "MachineSpec",
    "ManualClock",
    "MemoryStore",
    "NestedTransitionError",
    "NotStartedError",
    "Plan",
    "PostconditionFailedError",
    "PreconditionFailedError",
    "ProtectedStateError",
    "Runner",
    "Snapshot",
    "State",
    "StateFields",
    "StateSpec",
    "StatefulObject",
    "StatekitError",
    "Store",
    "StoreError",
    "SweepResult",
    "Sweeper",
    "SweeperError",
    "SystemClock",
    "TimeoutSpec",
    "Transition",
    "TransitionError",
    "TransitionNotAllowedError",
    "TransitionRecord",
    "TransitionSpec",
    "UnknownEventError",
    "UnknownMachineError",
    "UnstorableTextError",
    "Workflow",
    "__version__",
    "retry_on_conflict",
]


def test_all_is_pinned() -> None:
    assert sorted(statekit.__all__) == PUBLIC
    assert len(set(statekit.__all__)) == len(statekit.__all__)


def test_every_public_name_resolves() -> None:
    namespace: dict[str, object] = {}
    exec("from statekit import *", namespace)
    for name in PUBLIC:
        assert getattr(statekit, name) is not None
        assert namespace[name] is getattr(statekit, name)


def test_public_objects_come_from_statekit_modules() -> None:
    for name in PUBLIC:
        value = getattr(statekit, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__.startswith("statekit."), name


def test_version_is_a_string() -> None:
    assert isinstance(statekit.__version__, str)
    assert statekit.__version__[0].isdigit()
