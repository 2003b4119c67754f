"""The README's examples run here, so they cannot rot.

Every ```python block in README.md is a doctest session (`>>>` prompts). The blocks run
top to bottom in one namespace, as one interpreter session would, and every output and
exception message must match exactly. The quick start must stay the two make commands,
every `make <target>` the README mentions must exist, and the error tree must match
`statekit.errors`.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path
from typing import NamedTuple

import pytest

import statekit
from statekit import errors

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


class Block(NamedTuple):
    """A fenced code block: its language tag, the README line its body starts on
    (1-based) and its text."""

    lang: str
    line: int
    body: str


def fenced_blocks(text: str) -> list[Block]:
    """Return the fenced code blocks of a Markdown text, in order."""
    return [
        Block(m["lang"], text.count("\n", 0, m.start("body")) + 1, m["body"])
        for m in _FENCE.finditer(text)
    ]


def section(text: str, title: str) -> str:
    """Return the body of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README.md has no '## {title}' section"
    return match.group(1)


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_every_python_block_is_a_doctest(readme: str) -> None:
    blocks = fenced_blocks(readme)
    python = [b for b in blocks if b.lang == "python"]
    assert python, "README.md has no ```python blocks"
    not_sessions = [b.line for b in python if ">>> " not in b.body]
    assert not not_sessions, (
        f"README.md lines {not_sessions}: ```python blocks must be doctest sessions (>>>)"
    )
    other_tags = [b.line for b in blocks if b.lang in {"py", "pycon", "python3", "pycon3"}]
    assert not other_tags, f"README.md lines {other_tags}: tag Python examples ```python"


def test_readme_examples_run(readme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(ROOT)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(verbose=False)
    namespace: dict[str, object] = {"__name__": "readme"}
    report: list[str] = []
    for block in fenced_blocks(readme):
        if block.lang != "python":
            continue
        test = parser.get_doctest(
            block.body, namespace, f"README.md:{block.line}", str(README), block.line - 1
        )
        test.globs = namespace  # share one session across blocks
        runner.run(test, out=report.append, clear_globs=False)
    assert runner.tries > 0, "README.md has no examples"
    if runner.failures:
        pytest.fail(
            f"{runner.failures} README example(s) failed:\n" + "".join(report), pytrace=False
        )


def test_quick_start_is_make_demo_and_make_test(readme: str) -> None:
    blocks = fenced_blocks(section(readme, "Quick start"))
    assert blocks, "the quick start has no code block"
    commands = [line.strip() for line in blocks[0].body.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_make_targets_in_readme_exist(readme: str) -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", MAKEFILE.read_text(encoding="utf-8"), re.M))
    mentioned = set(re.findall(r"\bmake ([a-z][\w-]*)", readme))
    assert mentioned, "README.md mentions no make targets"
    assert mentioned <= targets, f"not targets in the Makefile: {sorted(mentioned - targets)}"


def _documented_tree(readme: str) -> dict[str, str | None]:
    """Parse the error tree in the Errors section into {error: parent}."""
    tree = next(b for b in fenced_blocks(section(readme, "Errors")) if b.lang == "text")
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in tree.body.splitlines():
        match = re.search(r"[A-Z]\w*Error", line)
        if match is None:
            continue
        depth = match.start()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[match.group()] = stack[-1][1] if stack else None
        stack.append((depth, match.group()))
    return parents


def test_error_tree_matches_the_code(readme: str) -> None:
    documented = _documented_tree(readme)
    public = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.StatekitError)
    }
    assert set(documented) == public, (
        "the error tree in README.md (## Errors) differs from statekit.errors: "
        f"undocumented {sorted(public - set(documented))}, "
        f"not in the code {sorted(set(documented) - public)}"
    )
    for name, parent in documented.items():
        cls = getattr(statekit, name)
        if parent is None:
            assert cls is errors.StatekitError
        else:
            assert issubclass(cls, getattr(statekit, parent)), f"{name} is not a {parent}"


def test_command_outputs_shown_in_the_readme_are_what_the_commands_print(
    readme: str, tmp_path: Path
) -> None:
    """Every ```text block that starts with `$ statekit ...` is run after `statekit demo`
    (whose database the examples read) and must print exactly what the README shows."""
    import shlex
    import subprocess
    import sys

    shown = [b for b in fenced_blocks(readme) if b.lang == "text" and b.body.startswith("$ ")]
    assert shown, "README.md shows no command output"
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}  # the examples in models/
    demo = subprocess.run(
        [sys.executable, "-m", "statekit", "demo", "--dir", "demo-output"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    for block in shown:
        lines = block.body.splitlines()
        command = lines[0][2:]
        taken = 1
        while command.endswith("\\"):
            command = command[:-1] + lines[taken].strip()
            taken += 1
        argv = shlex.split(command)
        assert argv[0] == "statekit", block.line
        result = subprocess.run(
            [sys.executable, "-m", "statekit", *argv[1:]],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, (block.line, result.stderr)
        assert result.stdout.splitlines() == lines[taken:], f"README.md line {block.line}"
