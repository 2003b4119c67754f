"""statekit: business entities as explicit, persisted finite-state machines."""

from __future__ import annotations

from statekit.clock import Clock, ManualClock, SystemClock
from statekit.compensation import Backoff, CompensationContext, CompensationTask
from statekit.declare import Event, State, Transition, Workflow
from statekit.definition import MachineSpec, StateSpec, TimeoutSpec, TransitionSpec
from statekit.engine import Handler, Machine
from statekit.entity import StateFields, StatefulObject
from statekit.errors import (
    CompensationError,
    CompensationTimeoutError,
    ConcurrentTransitionError,
    DefinitionError,
    DefinitionFormatError,
    DefinitionMismatchError,
    GuardRejectedError,
    IdempotencyConflictError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidPayloadError,
    NestedTransitionError,
    NotStartedError,
    PostconditionFailedError,
    PreconditionFailedError,
    ProtectedStateError,
    StatekitError,
    StoreError,
    SweeperError,
    TransitionError,
    TransitionNotAllowedError,
    UnknownEventError,
    UnknownMachineError,
    UnstorableTextError,
)
from statekit.records import Context, Plan, Snapshot, TransitionRecord
from statekit.runtime import Listener, Runner, retry_on_conflict
from statekit.store import MemoryStore, Store
from statekit.sweeper import Sweeper, SweepResult

__version__ = "0.1.0.dev0"

__all__ = [
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
