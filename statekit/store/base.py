"""The Runner's store protocol; declared, with the Sweeper's, in `statekit.store.protocol`.

Kept so that `from statekit.store.base import Store, AfterCommit` goes on working.
"""

from __future__ import annotations

from statekit.store.protocol import AfterCommit, Store

__all__ = ["AfterCommit", "Store"]
