"""The README and the guides promise that every command they show works as written.

Running them all would take hours (benchmarks, RL runs), so this checks what can rot without
anyone noticing: every `latentcode ...` line parses with today's CLI, every script and config
it names exists, every Python snippet compiles and imports names that exist, and every relative
link (anchors included) lands somewhere.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import shlex
from pathlib import Path

import pytest

from latentcode.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _python_blocks(page: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == "python"]


def _shell_lines(block: str, console: bool) -> list[str]:
    """Logical command lines of a shell block: continuations joined, console output dropped."""
    lines, current = [], ""
    for raw in block.splitlines():
        if console and not current:
            if not raw.startswith("$ "):
                continue  # a command's output
            raw = raw[2:]
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [line for line in lines if line]


def _expand_loops(lines: list[str]) -> list[str]:
    """Commands inside `for VAR in a b; do ... done`, once per value (nested loops too)."""
    loops: list[tuple[str, list[str]]] = []
    out = []
    for line in lines:
        if m := re.fullmatch(r"for (\w+) in (.+); do", line):
            loops.append((m[1], m[2].split()))
        elif line == "done":
            loops.pop()
        else:
            expanded = [line]
            for var, values in loops:
                expanded = [e.replace(f"${var}", v) for e in expanded for v in values]
            out.extend(expanded)
    return out


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for lang, block in FENCE.findall(page.read_text()):
            if lang not in ("bash", "console"):
                continue
            for line in _expand_loops(_shell_lines(block, console=lang == "console")):
                found.append((f"{page.name}: {line}", shlex.split(line, comments=True)))
    return found


def _latentcode_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after `latentcode` (or `-m latentcode`), or None for other commands."""
    for i, token in enumerate(tokens):
        is_cli = token == "latentcode" or token.endswith("/latentcode")
        if is_cli and (i == 0 or tokens[i - 1] == "-m"):
            return tokens[i + 1:]
    return None


COMMANDS = _commands()
CLI_COMMANDS = [(where, argv) for where, tokens in COMMANDS
                if (argv := _latentcode_argv(tokens)) is not None]


def test_the_pages_show_commands():
    """Guards the parsing below: a change of fence style must not leave nothing to check."""
    assert len(CLI_COMMANDS) >= 25
    assert any("benchmarks/" in where for where, _ in COMMANDS)


@pytest.mark.parametrize("where,argv", CLI_COMMANDS, ids=[w[:90] for w, _ in CLI_COMMANDS])
def test_every_latentcode_command_parses(where, argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}\n  does not parse with today's CLI (exit {exc.code})")
    for name in ("config", "prompts"):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.startswith("runs/"):
            assert (ROOT / value).exists(), f"{where}\n  names {value}, which is not in the repo"


def test_every_script_a_page_runs_exists():
    for where, tokens in COMMANDS:
        for token in tokens:
            if token.endswith(".py") and ("benchmarks/" in token or "tools/" in token):
                assert (ROOT / token).is_file(), f"{where}\n  runs {token}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_snippets_compile_and_import_what_exists(page):
    for block in _python_blocks(page):
        tree = ast.parse(block)  # a syntax error fails here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in (
                    "latentcode", "detectors"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), \
                        f"{page.name}: {node.module} has no {alias.name}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@functools.cache
def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(dest), f"{page.name}: no heading for #{anchor} in {dest.name}"


def test_the_readme_maps_every_guide():
    readme = (ROOT / "README.md").read_text()
    for guide in (ROOT / "docs").glob("*.md"):
        assert f"docs/{guide.name}" in readme, f"README.md does not link docs/{guide.name}"
