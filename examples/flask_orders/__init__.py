"""An order service on statekit's Flask extension: see README.md beside this file."""

from __future__ import annotations

from examples.flask_orders.app import create_app

__all__ = ["create_app"]
