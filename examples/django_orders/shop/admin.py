"""The orders in the admin: `StateModelAdmin` does the state machine's part."""

from __future__ import annotations

from django.contrib import admin

from examples.django_orders.shop.models import Order
from statekit.contrib.django.admin import StateModelAdmin


@admin.register(Order)
class OrderAdmin(StateModelAdmin):
    """Orders: state and stuck filters, an action per event, the history and the
    diagram on each order's page."""

    list_display = ("id", "customer", "total", "state", "stuck_at", "created_at")
    search_fields = ("customer",)
