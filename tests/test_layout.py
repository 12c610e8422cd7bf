"""The package's layout rules (helpers/README.md): one sub-package per stage, modules of one concern and at most
~300 lines, our own imports at the top of each module, no re-export shims, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
MODULES = sorted(p for p in HELPERS.rglob("*.py") if p.name != "__init__.py")
MAX_LINES = 310  # "about 300"


def _name(path: Path) -> str:
    return ".".join(path.relative_to(HELPERS.parent).with_suffix("").parts)


def _own_imports(tree: ast.Module):
    """(node, imported module, at module level?) for every ``from helpers... import`` in ``tree``."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("helpers")):
            yield node, node.module or "", id(node) in top


def test_sub_packages_by_stage_and_no_flat_modules():
    assert not [p.name for p in HELPERS.glob("*.py") if p.name != "__init__.py"], "every module lives in a sub-package"
    packages = sorted(p.name for p in HELPERS.iterdir() if (p / "__init__.py").exists())
    assert packages == ["dashboard", "data", "evaluate", "files", "generate", "model", "rewards", "run", "runtime",
                        "save", "train"]
    readme = (HELPERS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in packages), "helpers/README.md maps every sub-package"


def test_modules_are_short_have_a_docstring_and_import_their_own_at_the_top():
    for path in MODULES:
        source = path.read_text()
        tree = ast.parse(source)
        assert len(source.splitlines()) <= MAX_LINES, f"{_name(path)} has {len(source.splitlines())} lines"
        assert ast.get_docstring(tree), f"{_name(path)} has no docstring"
        inside = [n.lineno for n, _, at_top in _own_imports(tree) if not at_top]
        assert not inside, f"{_name(path)} imports helpers modules inside functions at lines {inside}"
        assert not any(n.level for n, _, _ in _own_imports(tree)), f"{_name(path)}: absolute imports only"


def test_no_re_export_shims():
    for path in MODULES:
        source = path.read_text()
        lines = source.splitlines()
        assert "__all__" not in source, f"{_name(path)} re-exports through __all__"
        for node in ast.parse(source).body:  # an unused import at module level would only re-export a name
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                text = "\n".join(lines[node.lineno - 1:node.end_lineno])
                assert "noqa: F401" not in text, f"{_name(path)} line {node.lineno} keeps an unused import"


def test_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        deps = set()
        for node, module, at_top in _own_imports(ast.parse(path.read_text())):
            if at_top:
                parts = module.split(".")
                deps |= {f"{module}.{a.name}" for a in node.names} if len(parts) == 2 else {module}
        graph[_name(path)] = {d for d in deps if d in {_name(p) for p in MODULES}}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(trail + [node, dep])
            if dep not in state:
                visit(dep, trail + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
