"""`StateKit`: the Flask extension object, and the calls views make through it.

    db = SQLAlchemy(model_class=Base)
    statekit = StateKit()

    def create_app() -> Flask:
        app = Flask(__name__)
        db.init_app(app)
        statekit.init_app(app, db=db)
        return app

The object holds no app: each call works on `current_app`'s `StateKitState`
(``app.extensions["statekit"]``), so one `StateKit` serves many apps.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_request_context, request
from sqlalchemy.orm import object_session

from statekit.compensation import CompensationTask
from statekit.contrib.events import EventInfo, events_from, payload_from
from statekit.contrib.flask.problems import InstanceNotFoundHTTPError, problem_response
from statekit.contrib.flask.settings import DEFAULTS, Settings
from statekit.contrib.flask.state import EXTENSION_KEY, StateKitState, state_of
from statekit.engine import Machine
from statekit.errors import (
    InstanceNotFoundError,
    InvalidArgumentError,
    StatekitError,
    StoreError,
)
from statekit.limits import KEY_MAX, unstorable_text
from statekit.records import Snapshot, TransitionRecord
from statekit.runtime import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.sweeper import Sweeper, SweepResult

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

__all__ = [
    "FROM_HEADER",
    "IDEMPOTENCY_HEADER",
    "AlreadyInitializedError",
    "DetachedEntityError",
    "StateKit",
]

IDEMPOTENCY_HEADER = "Idempotency-Key"
"""The request header `FROM_HEADER` reads."""


class _FromHeader(enum.Enum):
    FROM_HEADER = "from the Idempotency-Key header"


FROM_HEADER = _FromHeader.FROM_HEADER
"""Pass as `idempotency_key` to use the request's ``Idempotency-Key`` header (no
key when the request has none)."""


class AlreadyInitializedError(StatekitError):
    """`init_app` was called twice on one app."""


class DetachedEntityError(StoreError):
    """The entity belongs to no Session, so its transition could not join the
    request's transaction."""


class StateKit:
    """The statekit extension: a store over the app's database, runners for the
    machines its mapped classes carry, `flask statekit` commands and (opt-in)
    problem-details error handlers.

    Args:
        app: The app to initialise now; or call `init_app` later (app factories).
        db: The app's Flask-SQLAlchemy extension: its engine, metadata, mapped
            classes and request-scoped session.
        entities: Machines and the mapped classes that store them, besides those
            found on `db.Model` (classes with `__statekit_machine__`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        entities: Mapping[Machine, type] | None = None,
    ) -> None:
        self.db = db
        self.entities = dict(entities or {})
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        entities: Mapping[Machine, type] | None = None,
    ) -> None:
        """Set statekit up on `app`: read its `STATEKIT_*` config, keep the app's
        `StateKitState` in ``app.extensions["statekit"]``, add the
        ``flask statekit`` commands and, with `STATEKIT_PROBLEM_DETAILS`, the
        error handlers.

        Raises:
            AlreadyInitializedError: `app` has statekit already.
            ConfigError: a config value cannot be used, or there is no database.
        """
        if EXTENSION_KEY in app.extensions:
            raise AlreadyInitializedError(
                f"statekit is already initialised on app {app.name!r}; call init_app once "
                f"per app (use one StateKit object, or app.extensions['statekit'])"
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        settings = Settings.from_config(app.config)
        state = StateKitState(
            settings,
            db=db if db is not None else self.db,
            entities={**self.entities, **(entities or {})},
        )
        app.extensions[EXTENSION_KEY] = state
        from statekit.contrib.flask.commands import statekit_group

        app.cli.add_command(statekit_group())
        if settings.problem_details:
            app.register_error_handler(StatekitError, problem_response)

    # -- bound to current_app --------------------------------------------------------

    @property
    def state(self) -> StateKitState:
        """The current app's `StateKitState`."""
        return state_of(current_app)

    @property
    def store(self) -> SQLAlchemyStore:
        """The current app's store."""
        return self.state.store

    @property
    def machines(self) -> dict[str, Machine]:
        """The current app's machines, by name."""
        return self.state.machines

    def runner(self, of: str | Machine | object) -> Runner:
        """The current app's Runner of a machine: given its name, the machine, a
        mapped class or an instance of one.

        Raises:
            StatekitError: no such machine in this app.
        """
        return _runner(self.state, of)

    def sweeper(self) -> Sweeper:
        """A `Sweeper` over the current app's machines (`STATEKIT_SWEEP_*` settings)."""
        return self.state.sweeper()

    # -- what views call -------------------------------------------------------------

    def actor(self) -> str | None:
        """Who is acting in the current request (`STATEKIT_ACTOR`), or None outside
        a request."""
        if not has_request_context():
            return None
        return self.state.settings.actor(request)

    def start(self, entity: object) -> Snapshot:
        """Start a new instance in the request's session: it is added to `db.session`
        (unless it is in a Session already) and flushed, not committed.

        Raises:
            StoreError: the row could not be inserted (a key taken, say).
        """
        runner = self.runner(entity)
        if object_session(entity) is None and self.state.db is not None:
            self.state.db.session.add(entity)
        return runner.start(entity)

    def fire(
        self,
        entity: object,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | _FromHeader | None = None,
        actor: str | None = None,
        correlation_id: str | None = None,
    ) -> TransitionRecord:
        """Fire `event` on `entity` in the Session it was loaded through (the
        request's `db.session`): the transition is flushed with the request's other
        work and commits, or rolls back, with it. statekit never commits here.

        Args:
            entity: A mapped instance loaded through a Session (`get_or_404`).
            event: The event's name.
            payload: The event's payload (validated by its model).
            idempotency_key: A key that makes a retry return the recorded transition
                (`replayed=True`) instead of applying twice; `FROM_HEADER` reads the
                request's ``Idempotency-Key`` header.
            actor: Who acts; by default `actor()` (`STATEKIT_ACTOR`).
            correlation_id: Recorded with the transition.

        Raises:
            TransitionError: the machine refused (subclass says why); nothing written.
            ConcurrentTransitionError: another transition won the race.
            DetachedEntityError: `entity` belongs to no Session.
        """
        state = self.state
        runner = state.runner_for(entity)
        if object_session(entity) is None:
            key = runner.machine.key_of(entity)
            raise DetachedEntityError(
                f"cannot fire {event!r} on {runner.machine.name} {key}: it belongs to no "
                f"Session; load it through db.session (statekit.get_or_404) so the "
                f"transition commits with the request's work"
            )
        data = payload_from(runner.machine, entity, event, payload)
        if idempotency_key is FROM_HEADER:
            if not has_request_context():
                raise StatekitError(
                    f"cannot fire {event!r} on {runner.machine.name} "
                    f"{runner.machine.key_of(entity)}: FROM_HEADER reads the request's "
                    f"Idempotency-Key header, and there is no request here; pass the key"
                )
            idempotency_key = idempotency_key_from_header()
        assert not isinstance(idempotency_key, _FromHeader)
        if actor is None and has_request_context():
            actor = state.settings.actor(request)
        return runner.fire(
            entity,
            event,
            actor=actor,
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            **data,
        )

    def allowed_events(self, entity: object) -> list[EventInfo]:
        """The events declared from `entity`'s state (guards not evaluated), each
        with its payload's fields; never raises for an unknown state."""
        machine = self.runner(entity).machine
        return events_from(machine, machine.state_of(entity))

    def get_or_404(self, of: str | type, key: object) -> Any:
        """The instance with `key`, loaded through `db.session`; `of` is a machine
        name or a mapped class.

        Raises:
            InstanceNotFoundHTTPError: no such instance (a 404, as a problem when
                the error handlers are on).
        """
        state = self.state
        name, binding = state.binding_for(of)
        text = str(key)
        try:
            coerced = binding.coerce_key(text)
        except InstanceNotFoundError:
            coerced = None
        db = state.db
        found = None
        if coerced is not None:
            if db is None:
                raise StatekitError("get_or_404 needs Flask-SQLAlchemy: pass db= to StateKit")
            found = db.session.get(binding.entity_class, coerced)
        if found is None:
            raise InstanceNotFoundHTTPError(entity_type=name, key=text)
        return found

    def history(self, entity: object) -> Sequence[TransitionRecord]:
        """The instance's committed transitions, oldest first."""
        return self.runner(entity).history(entity)

    # -- a person's levers (the CLI's `retry`, `resolve`, `stuck`, `sweep --once`) ----

    def stuck(self) -> list[tuple[Snapshot, list[CompensationTask]]]:
        """Every stuck instance with its compensations (`statekit stuck`)."""
        return list(self.sweeper().stuck())

    def retry(
        self, entity_type: str, key: object, *, actor: str | None = None, extra_attempts: int = 3
    ) -> TransitionRecord:
        """Give an instance's dead-lettered compensations more attempts
        (`statekit retry`); commits in a transaction of its own.

        Raises:
            StatekitError: it has no dead-lettered compensations.
        """
        return self.sweeper().retry(
            entity_type, str(key), actor=self._lever_actor(actor), extra_attempts=extra_attempts
        )

    def resolve(
        self, entity_type: str, key: object, state: str, *, note: str, actor: str | None = None
    ) -> TransitionRecord:
        """Move a stuck instance into `state` by hand (`statekit resolve`); commits in
        a transaction of its own.

        Raises:
            StatekitError: unknown state, or an empty note.
        """
        return self.sweeper().resolve(
            entity_type, str(key), state, note=note, actor=self._lever_actor(actor)
        )

    def sweep(self) -> SweepResult:
        """One sweep pass (`statekit sweep --once`)."""
        return self.sweeper().run_once()

    def _lever_actor(self, actor: str | None) -> str:
        return actor or self.actor() or "anonymous"


def _runner(state: StateKitState, of: object) -> Runner:
    if isinstance(of, str | Machine):
        return state.runner(of)
    return state.runner_for(of)


def idempotency_key_from_header() -> str | None:
    """The request's ``Idempotency-Key`` header (a structured-field string's quotes
    removed), or None.

    Raises:
        InvalidArgumentError: the client sent a key the history cannot hold (longer
            than `statekit.limits.KEY_MAX`): the request's fault, answered 422.
    """
    value = request.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if len(value) > KEY_MAX or unstorable_text(value) is not None:
        raise InvalidArgumentError(
            IDEMPOTENCY_HEADER,
            value,
            f"a key of at most {KEY_MAX} characters of text (no NUL)",
        )
    return value or None
