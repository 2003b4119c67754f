"""The exception tree: one root, facts as attributes, messages that say what is allowed."""

from __future__ import annotations

import pytest

import statekit
from statekit import (
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

TREE: dict[type[Exception], type[Exception]] = {
    DefinitionError: StatekitError,
    DefinitionFormatError: DefinitionError,
    TransitionError: StatekitError,
    TransitionNotAllowedError: TransitionError,
    UnknownEventError: TransitionError,
    GuardRejectedError: TransitionError,
    PreconditionFailedError: TransitionError,
    PostconditionFailedError: TransitionError,
    InvalidPayloadError: TransitionError,
    NestedTransitionError: TransitionError,
    NotStartedError: TransitionError,
    IdempotencyConflictError: TransitionError,
    StoreError: StatekitError,
    ConcurrentTransitionError: StoreError,
    InstanceNotFoundError: StoreError,
    DefinitionMismatchError: StoreError,
    UnknownMachineError: StoreError,
    ProtectedStateError: StoreError,
    UnstorableTextError: StoreError,
    InvalidArgumentError: StatekitError,
    SweeperError: StatekitError,
    InvalidArgumentTypeError: InvalidArgumentError,
    CompensationError: StatekitError,
    CompensationTimeoutError: CompensationError,
}


@pytest.mark.parametrize(("error", "parent"), TREE.items(), ids=lambda c: c.__name__)
def test_the_tree(error: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(error, parent)
    assert issubclass(error, StatekitError)
    assert error.__name__.endswith("Error")


def test_every_exported_error_is_in_the_tree() -> None:
    exported = {
        getattr(statekit, name)
        for name in statekit.__all__
        if isinstance(getattr(statekit, name), type)
        and issubclass(getattr(statekit, name), Exception)
    }
    assert exported == {*TREE, StatekitError}


def test_an_unknown_machine_names_what_was_asked_and_what_there_is() -> None:
    one = UnknownMachineError(["invoice"], known=["order", "job"])
    assert (one.names, one.known) == (("invoice",), ("job", "order"))
    assert str(one) == "unknown machine 'invoice'; known: job, order"
    assert isinstance(one, LookupError)
    two = UnknownMachineError(["a", "b" * 200], known=[])
    assert str(two).startswith("unknown machines 'a', 'bbbb")
    assert str(two).endswith("(200 characters); known: none")


def test_pre_and_post_condition_errors_are_distinct() -> None:
    assert not issubclass(PreconditionFailedError, PostconditionFailedError)
    assert not issubclass(PostconditionFailedError, PreconditionFailedError)
    assert not issubclass(UnknownEventError, TransitionNotAllowedError)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StatekitError, "Base class of every error statekit raises."),
        (
            StoreError,
            "The store failed; the backend's exception, if any, is in `__cause__`.",
        ),
        (CompensationError, "A compensation could not be completed."),
    ],
)
def test_errors_without_data_use_their_docstring(error: type[StatekitError], message: str) -> None:
    assert str(error()) == message
    assert str(error("custom")) == "custom"


def test_definition_error_lists_problems() -> None:
    one = DefinitionError("m", ["first"])
    assert str(one) == "machine 'm' is invalid (1 problem):\n  - first"
    two = DefinitionError("m", ["first", "second"])
    assert str(two) == "machine 'm' is invalid (2 problems):\n  - first\n  - second"
    assert two.problems == ("first", "second")
    assert two.machine == "m"


def test_transition_errors_carry_their_facts() -> None:
    err = TransitionNotAllowedError(
        entity_type="order", key="42", state="pending_payment", event="ship", allowed_events=[]
    )
    assert str(err) == "cannot fire 'ship' on order 42 in state 'pending_payment'; allowed: none"
    assert (err.entity_type, err.key, err.state, err.event, err.allowed_events) == (
        "order",
        "42",
        "pending_payment",
        "ship",
        (),
    )
    unknown = UnknownEventError(
        entity_type="order",
        key=None,
        state="new",
        event="fly",
        allowed_events=["pay", "cancel"],
        known_events=[],
    )
    assert str(unknown) == (
        "order has no event 'fly' (machine 'order' declares: none); "
        "allowed in state 'new': pay, cancel"
    )
    payload = InvalidPayloadError(
        entity_type="order",
        key="1",
        state="new",
        event="pay",
        allowed_events=["pay"],
        errors=["amount: bad", "reference: missing"],
    )
    assert str(payload) == "invalid payload for 'pay' on order 1: amount: bad; reference: missing"
    assert payload.errors == ("amount: bad", "reference: missing")
    post = PostconditionFailedError(
        entity_type="order",
        key="1",
        state="new",
        event="pay",
        allowed_events=[],
        condition="balanced",
        reason="off by one",
    )
    assert str(post) == (
        "cannot fire 'pay' on order 1 in state 'new': post-condition 'balanced' failed: off by one"
    )


def test_store_errors_carry_their_facts() -> None:
    race = ConcurrentTransitionError(
        entity_type="order", key="7", event="pay", expected_version=3, actual_version=None
    )
    assert str(race) == (
        "cannot fire 'pay' on order 7: expected version 3 but the store has unknown; "
        "another transition won"
    )
    assert (race.expected_version, race.actual_version) == (3, None)
    behind = ConcurrentTransitionError(
        entity_type="order", key="7", event="pay", expected_version=1, actual_version=0
    )
    assert str(behind) == (
        "cannot fire 'pay' on order 7: expected version 1 but the store has 0; the object "
        "is ahead of the store (a transaction that wrote it rolled back): reload it"
    )
    twice = ConcurrentTransitionError(
        entity_type="order", key="7", event="(create)", expected_version=0, actual_version=2
    )
    assert str(twice) == (
        "cannot start order 7: it is already stored (at version 2); another start won"
    )
    missing = InstanceNotFoundError(entity_type="order", key="7")
    assert str(missing) == "order 7 not found"


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("o-1", "order o-1"),
        ("a\x00b", "order 'a\\x00b'"),
        ("line\nbreak", "order 'line\\nbreak'"),
        ("k" * 5000, "order '" + "k" * 60 + "'... (5000 characters)"),
    ],
    ids=["plain", "nul", "newline", "huge"],
)
def test_a_hostile_key_is_quoted_and_cut_in_every_message(key: str, shown: str) -> None:
    errors = [
        InstanceNotFoundError(entity_type="order", key=key),
        ConcurrentTransitionError(
            entity_type="order", key=key, event="pay", expected_version=1, actual_version=2
        ),
        ConcurrentTransitionError(
            entity_type="order", key=key, event="(create)", expected_version=0, actual_version=0
        ),
        ProtectedStateError(
            entity_type="order", key=key, event="ship", state="paid", stored_state="pending"
        ),
        NotStartedError(entity_type="order", key=key, event="pay"),
    ]
    for error in errors:
        assert shown in str(error)
        assert len(str(error)) < 400
        assert getattr(error, "key", key) == key  # the fact stays whole
    mismatch = DefinitionMismatchError(
        entity_type="order", key=None, field="state", value="gone", known=[]
    )
    assert str(mismatch) == (
        "order has state 'gone', which machine 'order' does not know (known: none)"
    )
    assert (mismatch.field, mismatch.value, mismatch.known) == ("state", "gone", ())


def test_a_compensation_timeout_carries_its_facts() -> None:
    late = CompensationTimeoutError(
        entity_type="booking", key="2", step=1, action="refund", timeout=0.25
    )
    assert str(late) == (
        "compensation 'refund' of booking 2 step 1 did not return within 0.25s "
        "(handler_timeout); counted as a failed attempt"
    )
    assert (late.entity_type, late.key, late.step, late.action, late.timeout) == (
        "booking",
        "2",
        1,
        "refund",
        0.25,
    )


def test_unstorable_text_is_a_store_error_and_the_callers_argument() -> None:
    error = UnstorableTextError("actor", "a\x00b", "text with no NUL", message="no NUL here")
    assert isinstance(error, InvalidArgumentError)
    assert isinstance(error, ValueError)
    assert (error.argument, error.value, error.allowed, str(error)) == (
        "actor",
        "a\x00b",
        "text with no NUL",
        "no NUL here",
    )
