"""The core imports only the standard library and pydantic: proved in a subprocess in which
every optional dependency fails to import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def run_blocked(
    script: str, blocked: tuple[str, ...] = BLOCKED
) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter, given `blocked` (by default the optional
    dependencies) as JSON in `sys.argv[1]`."""
    return subprocess.run(
        [sys.executable, "-c", script, json.dumps(blocked)],
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


BLOCKER = textwrap.dedent(
    """
    import json
    import sys

    BLOCKED = set(json.loads(sys.argv[1]))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(
                    f"import of {name} is blocked in this test", name=name
                )
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def run_without(blocked: tuple[str, ...], script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter in which only `blocked` fail to import."""
    return run_blocked(BLOCKER + textwrap.dedent(script), blocked)


def test_every_core_module_imports_with_every_optional_dependency_blocked() -> None:
    done = run_without(
        BLOCKED,
        """
        import statekit.branches, statekit.clock, statekit.compensation, statekit.deadlines
        import statekit.declare, statekit.definition, statekit.engine, statekit.entity
        import statekit.errors, statekit.handlers, statekit.records, statekit.runtime
        import statekit.staging, statekit.store.base, statekit.store.memory
        import statekit.sweeper, statekit.validation
        from statekit.diagrams import machine_graph, to_dot, to_mermaid
        from statekit import State, Workflow

        class Lamp(Workflow):
            off = State(initial=True)
            on = State(final=True)
            switch = off.to(on)

        graph = machine_graph(Lamp.machine)
        dot, mermaid = to_dot(graph), to_mermaid(graph)
        print(json.dumps({"dot": "digraph" in dot, "mermaid": "off -->" in mermaid}))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"dot": True, "mermaid": True}


def test_rendering_without_graphviz_raises_a_statekit_error_naming_the_extra() -> None:
    done = run_without(
        ("graphviz",),
        """
        from statekit import StatekitError
        from statekit.diagrams import GraphvizNotInstalledError, render

        try:
            render("digraph { a -> b }")
        except GraphvizNotInstalledError as exc:
            print(json.dumps({"statekit": isinstance(exc, StatekitError), "message": str(exc)}))
        """,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statekit"] is True
    assert "pip install 'statekit[diagrams]'" in result["message"]


@pytest.mark.parametrize(
    "entry",
    [
        "from statekit.cli import main; sys.argv = ['statekit', '--help']; main()",
        "import runpy; sys.argv = ['statekit']; runpy.run_module('statekit', run_name='__main__')",
    ],
    ids=["console-script", "python-m"],
)
def test_the_cli_without_click_prints_an_install_hint_and_exits_2(entry: str) -> None:
    done = run_without(("click",), entry)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "statekit: the command line needs click: pip install 'statekit[cli]'"
    ]


def test_a_cli_command_without_sqlalchemy_prints_the_extra_to_install() -> None:
    done = run_without(
        ("sqlalchemy",),
        "from statekit.cli import main; sys.argv = ['statekit', 'db', 'sql']; main()",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "Error: this command needs SQLAlchemy, which is not installed: "
        "pip install 'statekit[sqlalchemy]'"
    ]


def test_an_install_exposes_the_statekit_package_only(tmp_path: Path) -> None:
    """The editable install `make` does (and a wheel) put `statekit` on the path, not
    the repository's `models`, `tests` or `bench`: a project's own `-m models` must
    never find statekit's examples."""
    probe = (
        "import importlib.util, statekit; "
        "print([n for n in ('models', 'tests', 'bench') if importlib.util.find_spec(n)])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_statekit_and_the_cli_import_with_flask_absent_and_the_extension_names_its_extra() -> None:
    done = run_without(
        ("flask", "flask_sqlalchemy"),
        """
        import statekit, statekit.contrib, statekit.cli, statekit.store.sqlalchemy

        try:
            import statekit.contrib.flask
        except ImportError as exc:
            message = str(exc)
        loaded = sorted(n for n in sys.modules if n.partition(".")[0] in BLOCKED)
        print(json.dumps({"message": message, "loaded": loaded}))
        """,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    assert result["message"] == (
        "statekit.contrib.flask needs Flask: pip install 'statekit[flask]' "
        "(import of flask is blocked in this test)"
    )
