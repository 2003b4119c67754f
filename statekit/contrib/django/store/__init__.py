"""`DjangoStore`: every store tier of `statekit.store.protocol` on the Django ORM."""

from __future__ import annotations

from statekit.contrib.django.store.core import StoreCore
from statekit.contrib.django.store.outbox import OutboxOperations
from statekit.contrib.django.store.reads import ReadOperations
from statekit.contrib.django.store.sweep import SweepOperations
from statekit.contrib.django.store.units import DjangoUnit

__all__ = ["DjangoStore", "DjangoUnit"]


class DjangoStore(SweepOperations, OutboxOperations, ReadOperations, StoreCore):
    """Keeps statekit's instances in Django model rows (`StateModel`) and its history
    and outbox in the `statekit` app's tables, through the ORM only: one connection,
    Django's, and `transaction.atomic()` as the unit of work.

    `DjangoStore()` serves every installed model that names a machine
    (`__statekit_machine__`); pass models, or `{machine: model}`, to choose. `using`
    is the database alias; `clock` what `database_clock` returns for the sweeper
    (default: the system clock).
    """
