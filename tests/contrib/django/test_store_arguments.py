"""`DjangoStore`'s constructor refuses what it cannot serve with statekit's argument
errors, as `SQLAlchemyStore` does: an alias Django does not know (it surfaced later,
at the first read or write, as Django's own `ConnectionDoesNotExist`) and bindings that
are not model classes (a raw `TypeError` or `AttributeError`)."""

from __future__ import annotations

from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import InvalidArgumentError, InvalidArgumentTypeError
from statekit.contrib.django.store import DjangoStore
from tests.contrib.django.testapp.models import Order


def test_an_unknown_database_alias_is_refused_when_the_store_is_built() -> None:
    with pytest.raises(InvalidArgumentError, match=r"using='nope' refused: .*default") as info:
        DjangoStore({OrderWorkflow.machine: Order}, using="nope")
    assert isinstance(info.value, ValueError)
    assert info.value.argument == "using"


@pytest.mark.parametrize(
    "bindings",
    [42, "testapp.Order", [int], [object()], {OrderWorkflow.machine: int}, {"order": Order}],
)
def test_bindings_that_are_not_model_classes_are_refused(bindings: Any) -> None:
    with pytest.raises(InvalidArgumentTypeError) as info:
        DjangoStore(bindings)
    assert isinstance(info.value, TypeError)
    assert info.value.argument == "bindings"
