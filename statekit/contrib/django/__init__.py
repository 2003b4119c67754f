"""Django integration: `INSTALLED_APPS += ["statekit.contrib.django"]` (label `statekit`).

- `statekit.contrib.django.models`: `StateModel` (the abstract model with the state
  columns) and statekit's tables as models;
- `statekit.contrib.django.store`: `DjangoStore`, every store tier on the Django ORM;
- `statekit.contrib.django.signals`: `pre_transition`, `post_transition`.

Importing this package does not import Django's models (the app registry need not be
ready); import the submodules where you need them.
"""

from __future__ import annotations
