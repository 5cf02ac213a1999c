#!/usr/bin/env python3
"""Fails when the modules of a Rust crate depend on each other in a cycle (`make lint`).

rustc accepts cycles between the modules of one crate, so nothing else would notice one growing back. The
dependencies are read from the source: `crate::a::b` paths (in `use` lines and inline), `super::` paths and
`mod child;` declarations, each resolved to the deepest module file that exists. Test modules (after
`#[cfg(test)]`) are left out: a unit test may use anything. Usage: rust_module_cycles.py SRC_DIR...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

Module = tuple[str, ...]

CRATE_PATH = re.compile(r"\bcrate::((?:[A-Za-z_]\w*::)*)(\{[^}]*\}|[A-Za-z_]\w*)")
SUPER_PATH = re.compile(r"\bsuper::(\{|[A-Za-z_]\w*)")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", re.M)


def modules(src: Path) -> dict[Module, Path]:
    found = {}
    for path in src.rglob("*.rs"):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "mod":
            parts = parts[:-1]
        found[() if parts in (("lib",), ("main",)) else parts] = path
    return found


def dependencies(found: dict[Module, Path]) -> dict[Module, set[Module]]:
    def resolve(path: list[str]) -> Module:
        best: Module = ()
        for i in range(1, len(path) + 1):
            if tuple(path[:i]) in found:
                best = tuple(path[:i])
        return best

    edges: dict[Module, set[Module]] = {m: set() for m in found if m}
    for module in edges:
        text = re.sub(r"//[^\n]*", "", found[module].read_text(encoding="utf-8"))
        text = text.split("#[cfg(test)]")[0]
        for match in CRATE_PATH.finditer(text):
            prefix = [p for p in match.group(1).split("::") if p]
            tail = match.group(2)
            names = [n.strip().split("::")[0].split(" ")[0] for n in tail.strip("{}").split(",")]
            for name in names if tail.startswith("{") else [tail]:
                edges[module].add(resolve(prefix + ([name] if name and name != "self" else [])))
        for match in SUPER_PATH.finditer(text):
            name = match.group(1)
            edges[module].add(resolve(list(module[:-1]) + ([] if name == "{" else [name])))
        for match in MOD_DECL.finditer(text):
            edges[module].add(module + (match.group(1),))
        edges[module] -= {module, ()}
    return edges


def cycles(edges: dict[Module, set[Module]]) -> list[list[Module]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[Module, int] = {}
    low: dict[Module, int] = {}
    stack: list[Module] = []
    on_stack: set[Module] = set()
    found: list[list[Module]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def main(sources: list[str]) -> int:
    failed = False
    for source in sources:
        found = modules(Path(source))
        components = cycles(dependencies(found))
        for component in components:
            names = ", ".join("::".join(m) for m in sorted(component))
            print(f"{source}: modules in a dependency cycle: {names}", file=sys.stderr)
        if not components:
            print(f"{source}: {len(found)} modules, no dependency cycle")
        failed = failed or bool(components)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
