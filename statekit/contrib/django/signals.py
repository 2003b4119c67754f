"""Signals sent by `DjangoStore` around every transition it writes.

- `pre_transition(sender=model, instance=entity, record=record)`: inside the
  transaction, before the compare-and-set; a receiver's database writes join the
  transition's transaction, and a receiver that raises stops the transition.
- `post_transition(sender=model, instance=entity, record=record)`: after the
  transaction that wrote the transition committed (`transaction.on_commit`), never
  for a rolled-back one.

`record` is the `statekit.TransitionRecord` (seq, event, source, target, actor, ...).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["post_transition", "pre_transition"]

pre_transition = Signal()
post_transition = Signal()
