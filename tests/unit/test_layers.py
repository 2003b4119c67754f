"""The package's arrows, read from the source with `ast` (no tool, nothing imported).

Rules:
- the store layer (`statekit.store.*`) imports nothing from the runtime, the sweeper,
  the CLI, diagrams or interop;
- the core imports no concrete SQL store (`statekit.store.sqlalchemy`), and no
  third-party package but pydantic at module level (an optional extra such as PyYAML is
  imported inside the function that needs it);
- only the CLI's standalone host (`statekit.cli.sqlalchemy`) and `statekit.contrib`
  import the concrete SQL store from outside it;
- a web framework is imported only by its integration (`flask` and `flask_sqlalchemy`
  by `statekit.contrib.flask`, `django` by `statekit.contrib.django`), nothing
  outside `statekit.contrib` imports an integration, and no integration imports
  another (what they share, `statekit.contrib.events`, imports no framework);
- no module imports another module's underscore names;
- only `statekit.store.sqlalchemy.orm` touches SQLAlchemy's internals: imports from its
  internal modules (`sqlalchemy.orm.attributes`, `.state`, `.base`, ...) or of its
  underscore names, and reads of the internal attributes statekit relies on
  (`committed_state`, `_commit`, `new_instance`, `dispatch`, the compiler's
  `positiontup`/`binds`/`bind_names`, ...);
- no import cycles between statekit modules.

Every import counts, also one inside a function, except those under
`if TYPE_CHECKING:` (they never run). Cycles are found among module-level imports only:
an import inside a function runs after every module involved has loaded. Importing
`a.b.c` also runs `a/__init__` and `a/b/__init__`; those implicit edges are left out,
or every package that imports its own submodules would be a cycle.

Where today's code still breaks a rule, the violation is listed in `ALLOWED` with the
reason; the test asserts that the list holds exactly what is found, so it can only
shrink: fixing one means deleting its line here.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "statekit"

STORE = "statekit.store"
ABOVE_THE_STORE = (
    "statekit.runtime",
    "statekit.sweeper",
    "statekit.deadlines",
    "statekit.drain",
    "statekit.cli",
    "statekit.diagrams",
    "statekit.interop",
)
CONCRETE_STORE = "statekit.store.sqlalchemy"
CORE = (
    "statekit",
    "statekit.definition",
    "statekit.declare",
    "statekit.validation",
    "statekit.engine",
    "statekit.branches",
    "statekit.handlers",
    "statekit.staging",
    "statekit.entity",
    "statekit.records",
    "statekit.errors",
    "statekit.clock",
    "statekit.compensation",
    "statekit.deadlines",
    "statekit.drain",
    "statekit.runtime",
    "statekit.sweeper",
    "statekit.store",
    "statekit.store.base",
    "statekit.store.protocol",
    "statekit.store.memory",
    "statekit.store.memory_units",
    "statekit.store.memory_outbox",
)
CORE_THIRD_PARTY = {"pydantic"}
STORE_HOSTS = ("statekit.cli.sqlalchemy", "statekit.contrib")
CONTRIB = "statekit.contrib"
FRAMEWORK_HOMES = {
    "flask": "statekit.contrib.flask",
    "flask_sqlalchemy": "statekit.contrib.flask",
    "django": "statekit.contrib.django",
}
INTEGRATIONS = frozenset(FRAMEWORK_HOMES.values())
ORM_HOME = "statekit.store.sqlalchemy.orm"
SQLALCHEMY_INTERNAL_MODULES = (
    "sqlalchemy.orm.attributes",
    "sqlalchemy.orm.state",
    "sqlalchemy.orm.base",
    "sqlalchemy.orm.instrumentation",
    "sqlalchemy.orm.loading",
    "sqlalchemy.sql.compiler",
    "sqlalchemy.engine.default",
    "sqlalchemy.event",
)
SQLALCHEMY_INTERNAL_ATTRIBUTES = frozenset(
    {
        "committed_state",
        "_commit",
        "new_instance",
        "class_manager",
        "impl",
        "dispatch",
        "positiontup",
        "binds",
        "bind_names",
    }
)

ALLOWED = {
    # The demo runs on a SQLite file of its own: it is a standalone host too. It builds
    # its SQLAlchemyStore and opens ORM Sessions to add rows and race two clerks, which is
    # what it shows; it imports them only when it runs.
    ("concrete store outside its host", "statekit.cli.demo", "statekit.store.sqlalchemy"),
}
"""(rule, importer, imported) found today and accepted until the code is moved."""


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen from `importer`."""

    importer: str
    module: str  # the statekit module it reaches, or the top-level third-party name
    names: tuple[str, ...]  # names taken from `module` by `from ... import`
    top_level: bool  # runs when the importer is imported
    target: str = ""  # the dotted module named in the statement


def module_name(path: Path) -> str:
    """`statekit/store/__init__.py` -> `statekit.store`."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def statements(
    nodes: list[ast.AST], top_level: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import among `nodes` and inside them that can run, with whether it runs
    when its module is imported."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, top_level
        elif isinstance(node, ast.If) and is_type_checking(node):
            yield from statements(list(node.orelse), top_level)
        else:
            runs_later = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            inner = list(ast.iter_child_nodes(node))
            yield from statements(inner, top_level and not runs_later)


def imports_of(name: str) -> Iterator[Import]:
    """Every import in module `name` that can run, resolved to what it reaches."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node, top_level in statements(list(tree.body), True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, resolve(alias.name), (), top_level, alias.name)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        taken: list[str] = []
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in MODULES:  # `from package import module`
                yield Import(name, submodule, (), top_level)
            else:
                taken.append(alias.name)
        if taken or base not in MODULES:
            yield Import(name, resolve(base), tuple(taken), top_level, base)


def resolve(dotted: str) -> str:
    """The statekit module `dotted` names (or its longest existing prefix), or the
    top-level name of a package outside statekit."""
    if dotted.partition(".")[0] != "statekit":
        return dotted.partition(".")[0]
    while dotted not in MODULES and "." in dotted:
        dotted = dotted.rpartition(".")[0]
    return dotted


IMPORTS = [found for name in MODULES for found in imports_of(name)]


def internal_attributes(name: str) -> set[str]:
    """The SQLAlchemy internal attributes module `name` reads (`x.committed_state`)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in SQLALCHEMY_INTERNAL_ATTRIBUTES
    }


ATTRIBUTE_READS = {(name, attr) for name in MODULES for attr in internal_attributes(name)}


def within(module: str, prefix: str) -> bool:
    """Whether `module` is `prefix` or inside it."""
    return module == prefix or module.startswith(prefix + ".")


def violations() -> set[tuple[str, str, str]]:
    """Every (rule, importer, imported) the source breaks today."""
    found: set[tuple[str, str, str]] = set()
    for i in IMPORTS:
        internal = within(i.module, "statekit")
        if within(i.importer, STORE) and any(within(i.module, up) for up in ABOVE_THE_STORE):
            found.add(("store imports upward", i.importer, i.module))
        if i.importer in CORE and within(i.module, CONCRETE_STORE):
            found.add(("core imports the SQL store", i.importer, i.module))
        if (
            within(i.module, CONCRETE_STORE)
            and not within(i.importer, CONCRETE_STORE)
            and not any(within(i.importer, host) for host in STORE_HOSTS)
        ):
            found.add(("concrete store outside its host", i.importer, CONCRETE_STORE))
        home = FRAMEWORK_HOMES.get(i.module)
        if home is not None and not within(i.importer, home):
            found.add(("framework outside its integration", i.importer, i.module))
        if within(i.module, CONTRIB) and not within(i.importer, CONTRIB):
            found.add(("imports an integration", i.importer, i.module))
        for integration in INTEGRATIONS:
            if within(i.module, integration) and not within(i.importer, integration):
                if within(i.importer, CONTRIB):
                    found.add(("integration imports another", i.importer, integration))
        if (
            i.importer in CORE
            and i.top_level  # an optional extra may be imported where it is needed
            and not internal
            and i.module not in sys.stdlib_module_names
            and i.module not in CORE_THIRD_PARTY
            and i.module != "__future__"
        ):
            found.add(("core imports a third-party package", i.importer, i.module))
        if internal and i.module != i.importer:
            for imported in i.names:
                if imported.startswith("_") and not imported.startswith("__"):
                    found.add(("underscore name", i.importer, f"{i.module}.{imported}"))
        if i.importer != ORM_HOME and (
            any(within(i.target, internal) for internal in SQLALCHEMY_INTERNAL_MODULES)
            or (i.module == "sqlalchemy" and any(n.startswith("_") for n in i.names))
        ):
            found.add(("SQLAlchemy internals outside orm.py", i.importer, i.target))
    for importer, attr in ATTRIBUTE_READS:
        if importer != ORM_HOME:
            found.add(("SQLAlchemy internals outside orm.py", importer, f".{attr}"))
    for cycle in cycles():
        found.add(("import cycle", cycle[0], ", ".join(cycle)))
    return found


def cycles() -> list[tuple[str, ...]]:
    """The strongly connected components of the module-level import graph that hold
    more than one module (or one that imports itself), each sorted."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for i in IMPORTS:
        if i.top_level and i.module in MODULES and i.module != i.importer:
            graph[i.importer].add(i.module)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_the_layers_hold_except_for_the_listed_violations() -> None:
    found = violations()
    assert sorted(found - ALLOWED) == [], "new violations"
    assert sorted(ALLOWED - found) == [], "fixed: delete these from ALLOWED"


def edges(importer: str) -> dict[str, bool]:
    """What `importer` imports: statekit module -> whether at module level."""
    found: dict[str, bool] = {}
    for i in IMPORTS:
        if i.importer == importer:
            found[i.module] = found.get(i.module, False) or i.top_level
    return found


def test_the_reader_sees_module_level_lazy_and_type_checking_imports() -> None:
    assert len(MODULES) > 40
    assert edges("statekit.runtime")["statekit.engine"] is True
    assert edges("statekit.cli.demo")["statekit.store.sqlalchemy"] is False  # in a function
    assert edges("statekit.cli.sqlalchemy")["statekit.store.sqlalchemy"] is True
    assert edges("statekit.cli")["statekit.cli.sweep"] is True  # `from package import module`
    assert edges("statekit.contrib.flask.state")["statekit.store.sqlalchemy"] is True  # allowed
    deadlines = edges("statekit.deadlines")
    assert deadlines["statekit.runtime"] is True
    assert "statekit.sweeper" not in deadlines  # only under `if TYPE_CHECKING:`


def test_a_cycle_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    looped = [
        *IMPORTS,
        Import("statekit.engine", "statekit.runtime", ("Runner",), True),
        Import("statekit.clock", "statekit.errors", ("_private",), False),
    ]
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", looped)
    found = violations() - ALLOWED
    assert ("underscore name", "statekit.clock", "statekit.errors._private") in found
    [cycle] = [v for v in found if v[0] == "import cycle"]
    assert {"statekit.engine", "statekit.runtime"} <= set(cycle[2].split(", "))


def test_a_framework_outside_its_integration_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    leaked = [
        *IMPORTS,
        Import("statekit.cli.history", "flask", ("current_app",), False, "flask"),
        Import("statekit.runtime", "statekit.contrib.flask", ("StateKit",), False),
        Import("statekit.contrib.flask.state", "django", (), False, "django.db"),
        Import("statekit.contrib.django.admin", "statekit.contrib.flask.events", ("x",), False),
    ]
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", leaked)
    assert violations() - ALLOWED == {
        ("framework outside its integration", "statekit.cli.history", "flask"),
        ("imports an integration", "statekit.runtime", "statekit.contrib.flask"),
        ("framework outside its integration", "statekit.contrib.flask.state", "django"),
        ("integration imports another", "statekit.contrib.django.admin", "statekit.contrib.flask"),
    }


def test_sqlalchemy_internals_outside_orm_py_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ("statekit.store.sqlalchemy.orm", "committed_state") in ATTRIBUTE_READS
    leaked = [
        *IMPORTS,
        Import(
            "statekit.store.sqlalchemy.rows",
            "sqlalchemy",
            ("instance_state",),
            True,
            "sqlalchemy.orm.attributes",
        ),
        Import(
            "statekit.store.sqlalchemy.store", "sqlalchemy", ("_private",), True, "sqlalchemy.orm"
        ),
    ]
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", leaked)
    reads = {*ATTRIBUTE_READS, ("statekit.store.sqlalchemy.driver", "positiontup")}
    monkeypatch.setattr(sys.modules[__name__], "ATTRIBUTE_READS", reads)
    found = {v for v in violations() - ALLOWED if v[0] == "SQLAlchemy internals outside orm.py"}
    assert found == {
        (
            "SQLAlchemy internals outside orm.py",
            "statekit.store.sqlalchemy.rows",
            "sqlalchemy.orm.attributes",
        ),
        (
            "SQLAlchemy internals outside orm.py",
            "statekit.store.sqlalchemy.store",
            "sqlalchemy.orm",
        ),
        ("SQLAlchemy internals outside orm.py", "statekit.store.sqlalchemy.driver", ".positiontup"),
    }
