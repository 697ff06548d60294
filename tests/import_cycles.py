"""Print, as JSON, every import circle among the named packages: the strongly connected groups
of two or more modules (Tarjan's algorithm) in grimp's import graph, which counts imports inside
functions too. Usage: python tests/import_cycles.py PACKAGE..."""
from __future__ import annotations

import json
import sys

import grimp


def cycles(packages: list[str]) -> list[list[str]]:
    graph = grimp.build_graph(*packages, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def enter(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)

    for start in sorted(graph.modules):
        if start in index:
            continue
        enter(start)
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        while work:  # iterative, so a deep graph cannot exhaust the stack
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    enter(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


if __name__ == "__main__":
    sys.path.insert(0, ".")
    print(json.dumps(cycles(sys.argv[1:])))
