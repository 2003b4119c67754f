#!/usr/bin/env python
"""The example project's manage.py: ``python examples/django_orders/manage.py ...``
from the repository's root (or ``make django-example``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    """Run a Django management command on the example project."""
    root = Path(__file__).resolve().parents[2]  # the repository: models/ and examples/
    sys.path.insert(0, str(root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_orders.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
