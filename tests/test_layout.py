"""The house's shape: which package may import which, no import cycles, rooms of a size.

Reads every import of the tree with ``ast`` (lazy imports inside functions included) and
fails on an edge the layout forbids or on a cycle, naming the files that make it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "client", "server", "deploy")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from a import b``: ``a.b`` when that is a
    module, else ``a``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import a.b.c` of a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


#: (importer, imported, why): no module under the first may import one under the second.
FORBIDDEN = [
    ("common", "client", "common is shared by the apps; it never reaches into them"),
    ("common", "server", "common is shared by the apps; it never reaches into them"),
    ("common", "deploy", "common is shared by the apps; it never reaches into them"),
    ("client", "server", "a hospital's code never runs the coordinator's"),
    ("server", "client", "the coordinator never runs a hospital's code"),
    ("client", "deploy", "the ClientApp ships in the Flower App bundle, deploy does not"),
    ("server", "deploy", "the ServerApp ships in the Flower App bundle, deploy does not"),
    ("common.deid", "common.data", "de-identification sits below the data it cleans"),
    ("common.deid", "common.seg", "de-identification knows nothing of training"),
    ("common.deid", "common.synth", "de-identification knows nothing of training"),
    ("common.deid", "common.privacy", "de-identification knows nothing of training"),
    ("common.errors", "common", "the errors are the ground floor"),
    ("common.keys", "common", "the record names are the ground floor"),
]
#: Packages that must not reach de-identification even through other modules.
NEVER_REACH_DEID = ("common.seg", "common.synth", "common.privacy")
SUBPACKAGES = ("common.deid", "common.data", "common.seg", "common.synth", "common.privacy")


def test_no_forbidden_import():
    bad = []
    for name, targets in GRAPH.items():
        for src, dst, why in FORBIDDEN:
            for target in targets:
                if _within(name, src) and _within(target, dst) and not _within(target, src):
                    bad.append(f"{MODULES[name].relative_to(ROOT)} imports {target}: {why}")
        if any(_within(name, sub) for sub in SUBPACKAGES):
            for target in targets:
                if target in ("common.config", "common.baselines"):
                    bad.append(
                        f"{MODULES[name].relative_to(ROOT)} imports {target}: the plumbing "
                        "above the subpackages reads them, not the other way"
                    )
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", NEVER_REACH_DEID)
def test_training_code_never_reaches_deidentification(package):
    for name in (n for n in MODULES if _within(n, package)):
        reached = sorted(t for t in _reachable(name) if _within(t, "common.deid"))
        assert not reached, f"{name} reaches {reached} (seg, synth and privacy never need it)"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_modules():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_commons_subpackages():
    def room(name: str) -> str:
        return next((s for s in SUBPACKAGES if _within(name, s)), name)

    graph: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        if _within(name, "common"):
            graph.setdefault(room(name), set()).update(
                room(t) for t in targets if _within(t, "common") and room(t) != room(name)
            )
    cycle = _cycle(graph)
    assert cycle is None, "cycle between common's subpackages: " + " -> ".join(cycle or [])


def test_common_top_level_holds_only_the_plumbing():
    top = sorted(p.stem for p in (ROOT / "common").glob("*.py") if p.stem != "__init__")
    assert len(top) <= 6, f"common/ holds {top}: give new code a subpackage"


def test_no_module_over_500_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by concern: {long}"


def test_every_package_says_what_is_inside():
    for path in ROOT.glob("[cds]*/**/__init__.py"):
        if path.parts[len(ROOT.parts)] in PACKAGES:
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc) > 80, f"{path.relative_to(ROOT)} needs a docstring"
