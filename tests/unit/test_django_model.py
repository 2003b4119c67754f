"""The same machine drives a Django model: it only reads and writes attributes.

Django is configured in a child process, so its global settings stay out of this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
    django.setup()

    from decimal import Decimal
    from django.db import connection, models
    from models.order import OrderWorkflow
    from statekit import GuardRejectedError, MemoryStore, Runner

    class Order(models.Model):
        total = models.DecimalField(max_digits=12, decimal_places=2)
        sku = models.CharField(max_length=32, default="SKU-1")
        quantity = models.IntegerField(default=1)
        in_stock = models.IntegerField(default=10)
        card_authorized = models.BooleanField(default=True)
        credit_approved = models.BooleanField(default=False)
        paid_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal(0))
        state = models.CharField(max_length=64, null=True)
        state_version = models.IntegerField(default=0)
        state_entered_at = models.DateTimeField(null=True)
        state_deadline_at = models.DateTimeField(null=True)
        stuck_at = models.DateTimeField(null=True)
        stuck_reason = models.TextField(null=True)
        state_definition_version = models.IntegerField(null=True)

        class Meta:
            app_label = "shop"

    with connection.schema_editor() as editor:
        editor.create_model(Order)

    machine = OrderWorkflow.machine
    order = Order.objects.create(total=Decimal("30.00"))
    runner = Runner(machine, MemoryStore())
    runner.start(order)
    runner.fire(order, "reserve", actor="shop")
    order.card_authorized = False
    try:
        runner.fire(order, "pay", amount="30.00", reference="p-1")
    except GuardRejectedError as exc:
        refused = str(exc)
    order.card_authorized = True
    record = runner.fire(order, "pay", amount="30.00", reference="p-1")
    order.save()
    stored = Order.objects.get(pk=order.pk)
    print(json.dumps({
        "state": stored.state,
        "version": stored.state_version,
        "paid": str(stored.paid_amount),
        "in_stock": stored.in_stock,
        "deadline_set": stored.state_deadline_at is not None,
        "refused": refused,
        "record": [record.seq, record.event, record.target],
        "allowed": list(runner.allowed_events(stored)),
    }))
    """
)


def test_a_django_model_runs_the_order_workflow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "state": "paid",
        "version": 2,
        "paid": "30.00",
        "in_stock": 9,
        "deadline_set": True,
        "refused": (
            "cannot fire 'pay' on order 1 in state 'stock_reserved': "
            "guard 'payment_authorized' (to 'paid') said: card authorisation was declined"
        ),
        "record": [2, "pay", "paid"],
        "allowed": ["ship", "refund"],
    }
