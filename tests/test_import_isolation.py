"""The core imports only the standard library and pydantic: proved in a subprocess in which
every optional dependency fails to import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("sqlalchemy", "django", "flask", "graphviz", "transitions", "click")

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    BLOCKED = set(json.loads(sys.argv[1]))
    attempts = []

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"import of {name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())

    import statekit
    from statekit import MemoryStore, Runner, State, Workflow
    import statekit.store.memory

    class Door(Workflow):
        closed = State(initial=True)
        opened = State()
        gone = State(final=True)
        open = closed.to(opened)
        close = opened.to(closed)
        remove = (closed | opened).to(gone)

    class Thing:
        def __init__(self, key):
            self.id = key

    store = MemoryStore()
    runner = Runner(Door.machine, store)
    door = Thing("d1")
    runner.start(door)
    runner.fire(door, "open")
    runner.fire(door, "close")
    spec = Door.spec.to_json()

    loaded = sorted(
        name for name in sys.modules if name.partition(".")[0] in BLOCKED
    )
    print(json.dumps({
        "state": door.state,
        "version": store.load("door", "d1").version,
        "history": [r.event for r in store.history("door", "d1")],
        "loaded": loaded,
        "attempts": attempts,
        "spec_name": json.loads(spec)["name"],
    }))
    """
)


def run_blocked(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter with the optional dependencies blocked."""
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(BLOCKED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_core_works_with_every_optional_dependency_blocked() -> None:
    done = run_blocked(SCRIPT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "closed"
    assert result["version"] == 2
    assert result["history"] == ["open", "close"]
    assert result["spec_name"] == "door"
    assert result["loaded"] == []
    assert result["attempts"] == []


def test_the_blocker_really_blocks() -> None:
    done = run_blocked(
        SCRIPT.replace("import statekit\n", "import statekit\nimport sqlalchemy\n", 1)
    )
    assert done.returncode != 0
    assert "import of sqlalchemy is blocked in this test" in done.stderr
