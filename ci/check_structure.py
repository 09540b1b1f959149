"""The layout rules of gq/, checked on every CI run (`python ci/check_structure.py`).

1. No import cycle between gq's modules, counting imports inside functions too
   (a function-level import that only hides a cycle is still a cycle).
2. No module imports a `_`-prefixed name from another module.
3. No module over MAX_LINES lines.
4. No `getattr`/`hasattr` probing of a store: capabilities are declared
   (`store.capabilities`, gq/store/api.py).

Prints each breach with its place and exits 1; prints a summary and exits 0
when the tree keeps every rule.
"""

from __future__ import annotations

import ast
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gq"
MAX_LINES = 500
PROBE = re.compile(r"\b(?:get|has)attr\(\s*[\w.]*store\b")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, name: str, is_package: bool, modules: set[str]):
    """(imported module, line, imported names) of every import in the module."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:          # `from gq.store import rules`: a module
                    yield full, node.lineno, []
                else:
                    yield base, node.lineno, [alias.name]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    for path in files:
        name = module_name(path)
        text = path.read_text()
        where = path.relative_to(ROOT)
        n_lines = text.count("\n")
        if n_lines > MAX_LINES:
            problems.append(f"{where}: {n_lines} lines (at most {MAX_LINES}): split it")
        for n, line in enumerate(text.splitlines(), 1):
            if PROBE.search(line):
                problems.append(f"{where}:{n}: probes a store with getattr/hasattr; "
                                "declare it in Capabilities (gq/store/api.py)")
        tree = ast.parse(text, str(path))
        edges = graph.setdefault(name, set())
        for target, line, names in imports(tree, name, path.name == "__init__.py", modules):
            if target in modules and target != name:
                edges.add(target)
            if target.startswith("gq") and target != name:
                for imported in names:
                    if imported.startswith("_") and not imported.startswith("__"):
                        problems.append(f"{where}:{line}: imports the private name "
                                        f"{imported!r} from {target}; make it public there "
                                        "or keep the use inside that module")
    for component in cycles(graph):
        problems.append("import cycle between " + ", ".join(component) +
                        ": move the shared part to a module both can import")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    biggest = max(files, key=lambda p: p.read_text().count("\n"))
    print(f"gq/: {len(files)} modules, {sum(len(e) for e in graph.values())} imports between "
          f"them, no import cycle, no private-name import, no store probing; the largest "
          f"is {biggest.relative_to(ROOT)} ({biggest.read_text().count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
