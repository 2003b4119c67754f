"""The admin at ``/admin/`` and the orders' pages at ``/``."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from examples.django_orders.shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index, name="index"),
    path("orders/<int:order_id>/", views.order, name="order"),
]
