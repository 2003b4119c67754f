"""statekit's errors as RFC 9457 problem details (``application/problem+json``).

`problem_of` turns any `StatekitError` into the problem's fields: ``type``,
``title``, ``status``, ``detail`` and the error's facts (``entity``, ``key``,
``state``, ``event``, ``allowed``, ``check``, ``reason``, ...) where it has them.
`StateKit` registers `problem_response` as the app's handler of `StatekitError`
when `STATEKIT_PROBLEM_DETAILS` is true.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, current_app, json
from werkzeug.exceptions import NotFound

from statekit.contrib.flask.state import state_of
from statekit.errors import (
    ConcurrentTransitionError,
    DefinitionMismatchError,
    GuardRejectedError,
    IdempotencyConflictError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidPayloadError,
    NestedTransitionError,
    NotStartedError,
    PostconditionFailedError,
    PreconditionFailedError,
    ProtectedStateError,
    StatekitError,
    SweeperError,
    TransitionError,
    TransitionNotAllowedError,
    UnknownEventError,
)

__all__ = ["PROBLEM_TYPES", "InstanceNotFoundHTTPError", "problem_of", "problem_response"]

logger = logging.getLogger("statekit.flask")

MEDIA_TYPE = "application/problem+json"

PROBLEM_TYPES: tuple[tuple[type[StatekitError], int, str, str], ...] = (
    (ConcurrentTransitionError, 409, "lost-race", "Another transition won"),
    (ProtectedStateError, 409, "state-changed", "State changed outside a transition"),
    (NotStartedError, 409, "not-started", "Instance has no state yet"),
    (NestedTransitionError, 500, "nested-transition", "Transition fired inside another"),
    (IdempotencyConflictError, 422, "idempotency-key-reused", "Idempotency key reused"),
    (UnknownEventError, 422, "unknown-event", "Unknown event"),
    (TransitionNotAllowedError, 409, "event-not-allowed", "Event not allowed in this state"),
    (GuardRejectedError, 422, "guard-rejected", "Transition refused by a guard"),
    (PreconditionFailedError, 422, "precondition-failed", "Pre-condition failed"),
    (PostconditionFailedError, 422, "postcondition-failed", "Post-condition failed"),
    (InvalidPayloadError, 422, "invalid-payload", "Invalid event payload"),
    (InstanceNotFoundError, 404, "not-found", "Instance not found"),
    (TransitionError, 409, "transition-refused", "Transition refused"),
    (SweeperError, 409, "lever-refused", "Lever refused in this state"),
    (InvalidArgumentError, 422, "invalid-argument", "Invalid argument"),
    (DefinitionMismatchError, 500, "definition-mismatch", "Stored state unknown to the machine"),
    (StatekitError, 500, "statekit-error", "Workflow error"),
)
"""(error class, HTTP status, type slug, title), most specific first: the first
class an error is an instance of decides its problem."""


class InstanceNotFoundHTTPError(InstanceNotFoundError, NotFound):
    """No instance has this key: statekit's `InstanceNotFoundError` that is also
    werkzeug's `NotFound`, so a view's lookup answers 404 with or without the
    problem handlers (`StateKit.get_or_404`)."""

    def __init__(self, *, entity_type: str, key: str) -> None:
        super().__init__(entity_type=entity_type, key=key)
        self.description = f"{entity_type} {key} not found"

    def __str__(self) -> str:
        return f"{self.entity_type} {self.key} not found"


def problem_of(error: StatekitError, *, type_base: str, expose: bool = True) -> dict[str, Any]:
    """The problem-details fields of `error`.

    Args:
        error: Any statekit error.
        type_base: Starts the ``type`` URI (the slug follows).
        expose: Whether a server-side error (status 500) shows its message and
            facts; a client error always does.
    """
    status, slug, title = 500, "statekit-error", "Workflow error"
    for kind, kind_status, kind_slug, kind_title in PROBLEM_TYPES:
        if isinstance(error, kind):
            status, slug, title = kind_status, kind_slug, kind_title
            break
    problem: dict[str, Any] = {"type": f"{type_base}{slug}", "title": title, "status": status}
    if status >= 500 and not expose:
        problem["detail"] = "the server could not complete the transition; see its log"
        return problem
    problem["detail"] = str(error)
    problem.update(facts_of(error))
    return problem


def facts_of(error: StatekitError) -> dict[str, Any]:
    """The facts `error` carries, under the problem's field names."""
    facts: dict[str, Any] = {}
    for field, attribute in (("entity", "entity_type"), ("key", "key"), ("event", "event")):
        value = getattr(error, attribute, None)
        if value is not None:
            facts[field] = value
    if isinstance(error, TransitionError):
        facts["state"] = error.state
        facts["allowed"] = list(error.allowed_events)
    if isinstance(error, GuardRejectedError) and error.rejections:
        _, guard, reason = error.rejections[0]
        facts["check"], facts["reason"] = guard, reason
        facts["rejections"] = [
            {"target": t, "check": g, "reason": r} for t, g, r in error.rejections
        ]
    if isinstance(error, PreconditionFailedError | PostconditionFailedError):
        facts["check"], facts["reason"] = error.condition, error.reason
    if isinstance(error, InvalidPayloadError):
        facts["errors"] = list(error.errors)
    if isinstance(error, UnknownEventError):
        facts["known"] = list(error.known_events)
    if isinstance(error, IdempotencyConflictError):
        facts["idempotency_key"] = error.idempotency_key
        facts["recorded_event"] = error.recorded_event
    if isinstance(error, ConcurrentTransitionError):
        facts["expected_version"] = error.expected_version
        facts["actual_version"] = error.actual_version
    if isinstance(error, ProtectedStateError):
        facts["state"], facts["stored_state"] = error.state, error.stored_state
    if isinstance(error, SweeperError):
        facts["lever"], facts["state"] = error.lever, error.state
    if isinstance(error, InvalidArgumentError):
        facts["argument"], facts["allowed"] = error.argument, error.allowed
    if isinstance(error, DefinitionMismatchError):
        facts["field"] = error.field
    return facts


def problem_response(error: StatekitError) -> Response:
    """The app's error handler: `error` as an ``application/problem+json`` response."""
    settings = state_of(current_app).settings
    problem = problem_of(error, type_base=settings.problem_type_base, expose=current_app.debug)
    if problem["status"] >= 500:
        logger.error("statekit error answered with %d", problem["status"], exc_info=error)
    body = json.dumps(problem)
    return Response(body, status=problem["status"], mimetype=MEDIA_TYPE)
