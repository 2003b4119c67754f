"""statekit's system checks: unapplied migrations (W001) and stored states the machine
does not know (W002) on the database, permissions the admin checks (W003)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from examples.django_orders.shop.models import Order
from statekit.contrib.django.hosting import host

pytestmark = pytest.mark.usefixtures("database")


def ours(databases: list[str] | None = ("default",)) -> list[tuple[str, str]]:  # type: ignore[assignment]
    return [
        (m.id or "", m.msg)
        for m in run_checks(databases=databases)
        if (m.id or "").startswith("statekit.")
    ]


def test_a_migrated_database_with_known_states_passes() -> None:
    order = Order(customer="A", total=Decimal(5))
    host().runner_for(Order).start(order)
    assert ours() == []


def test_an_unknown_stored_state_is_reported() -> None:
    order = Order(customer="B", total=Decimal(5))
    host().runner_for(Order).start(order)
    Order.objects.filter(pk=order.pk).update(state="limbo")  # as an old deploy left it
    try:
        found = ours()
        assert ("statekit.W002", "order: 1 row(s) of Order in unknown state 'limbo'") in found
        assert ours(None) == []  # no database named: no database read
    finally:
        Order.objects.filter(pk=order.pk).delete()


def test_unapplied_statekit_migrations_are_reported() -> None:
    call_command("migrate", "statekit", "zero", verbosity=0)
    try:
        [(code, message)] = ours()
        assert code == "statekit.W001"
        assert "statekit.0001_initial" in message
        assert "database 'default'" in message
    finally:
        call_command("migrate", verbosity=0)
    assert ours() == []


def test_missing_admin_permissions_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Order._meta, "permissions", [("fire_pay_order", "Can fire pay")])
    found = [message for code, message in ours(None) if code == "statekit.W003"]
    assert len(found) == 1
    assert "shop.Order lacks the permissions its StateModelAdmin checks" in found[0]
    assert "fire_reserve_order" in found[0]
    assert "fire_pay_order," not in found[0]
