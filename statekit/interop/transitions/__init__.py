"""A bridge to the `transitions` library: export a statekit machine, import theirs.

`to_transitions` builds a `transitions.Machine` that makes the same decisions as a
statekit `Machine`; `from_transitions` reads a `transitions.Machine` back into a
`MachineSpec` plus the named handlers it needs, ready for `statekit.Machine`.
docs/interop-transitions.md says what maps, what is lost and what is refused.
"""

from __future__ import annotations

from statekit.interop.transitions.export import to_transitions
from statekit.interop.transitions.importer import ImportedMachine, from_transitions

__all__ = ["ImportedMachine", "from_transitions", "to_transitions"]
