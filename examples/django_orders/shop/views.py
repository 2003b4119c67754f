"""Two read-only pages: the orders with their states, and one order with its history
and the events it may take next (the admin is where people act on them)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from examples.django_orders.shop.models import Order
from statekit.contrib.django.hosting import host


def index(request: HttpRequest) -> HttpResponse:
    """Every order, newest first, with its state."""
    return render(request, "shop/index.html", {"orders": Order.objects.all()[:200]})


def order(request: HttpRequest, order_id: int) -> HttpResponse:
    """One order: its state, what may happen next, and its history."""
    found = Order.objects.filter(pk=order_id).first()
    if found is None:
        raise Http404(f"no order {order_id}")
    runner = host().runner_for(Order)
    context = {
        "order": found,
        "next_events": runner.allowed_events(found),
        "history": runner.history(found),
    }
    return render(request, "shop/order.html", context)
