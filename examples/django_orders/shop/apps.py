"""The shop app (label ``shop``)."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Orders of the example shop."""

    name = "examples.django_orders.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"
