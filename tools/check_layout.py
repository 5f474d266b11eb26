"""The layout rules of docs/architecture.md, checked from the code's imports (run by `make lint`).

- no import cycle between modules, lazy (function-level) imports included;
- no module over MAX_LINES lines;
- at most MAX_ROOT_MODULES modules at the root of monitor/;
- the pure cores import no Django and no project module outside the pure cores;
- no `_private` name taken from another module;
- monitor's domain modules never import the audits app (only AUDITS_USERS do);
- imports point down the layers (interface -> domain -> infrastructure) or stay in their layer, and the web
  interfaces (api, dashboards, admin) never import each other.

`python tools/check_layout.py --graph` prints the module graph instead (one "a -> b" line per import).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("monitor", "audits")
# Checked for size too: tests and benchmarks are read and changed as often as the product.
SIZED = ("monitor", "audits", "tests", "bench", "tools")
MAX_LINES = 600
MAX_ROOT_MODULES = 15
# The pure cores: numpy/scipy/scikit-learn science that runs without Django (a notebook can import it).
PURE = ("audits.attacks", "monitor.detection.detectors", "monitor.platform.severity", "monitor.alerts.evidence_text", "monitor.demo.traffic",
        "monitor.platform.versions", "monitor.platform.output_policy",
        "monitor.ingestion.vectors", "audits.evidence.verify", "audits.evidence.format", "monitor.trail.chain",
        "audits.evidence.checks", "audits.evidence.annex")
# One direction between the apps: the audit engine (audits) builds on monitor's registry, trail and alerts; in
# monitor only the outer layers that show or drive audits (pages, API, demo, URL table, admin) import audits.
AUDITS_USERS = ("monitor.api", "monitor.dashboards", "monitor.demo", "monitor.urls", "monitor.admin")
# The layers, top to bottom: a module belongs to the longest package listed (so `audits.tasks` is interface and
# the rest of `audits` domain). This table is what is measured: move code between packages, not packages between
# layers. The project's wiring (settings, urls, the Celery and WSGI apps, AppConfigs) stands apart: it may import
# any layer, and no layer imports it (settings are read through django.conf).
LAYERS: dict[str, tuple[str, ...]] = {
    "interface": ("monitor.api", "monitor.dashboards", "monitor.admin", "monitor.demo", "monitor.tasks",
                  "monitor.management", "monitor.templatetags", "audits.admin", "audits.tasks", "audits.management"),
    "domain": ("monitor.registry", "monitor.gateway", "monitor.ingestion", "monitor.detection", "monitor.alerts",
               "audits"),
    "infrastructure": ("monitor.access", "monitor.platform", "monitor.models", "monitor.trail"),
}
LAYER_ORDER = tuple(LAYERS)
WIRING = ("monitor", "monitor.settings", "monitor.urls", "monitor.celery", "monitor.wsgi", "monitor.apps",
          "audits.apps")
# The web interfaces do not lean on each other: what two of them need lives in a layer below.
WEB_INTERFACES: dict[str, tuple[str, ...]] = {
    "api": ("monitor.api",), "dashboards": ("monitor.dashboards",), "admin": ("monitor.admin", "audits.admin"),
}
PURE_MAY_IMPORT = {"numpy", "scipy", "sklearn", "diffprivlib", "cryptography", "__future__"} | set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files(packages: Iterable[str]) -> dict[str, Path]:
    files = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            files[module_name(path)] = path
    return files


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported dotted name lives in (the longest known prefix)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported dotted name, name taken from it or '', line) for every import, lazy ones included."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.append((f"{base}.{alias.name}", alias.name, node.lineno))
    return found


def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name, _, _ in imports(module, path):
            target = resolve(name, modules)
            if target and target != module:
                edges[module].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
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
                        found.append(sorted(component))
    return found


def within(module: str, packages: Iterable[str]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def is_pure(module: str) -> bool:
    return within(module, PURE)


def longest(module: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The key of `table` whose longest listed package holds `module`."""
    best, length = None, -1
    for key, packages in table.items():
        for package in packages:
            if within(module, (package,)) and len(package) > length:
                best, length = key, len(package)
    return best


def layer(module: str) -> str | None:
    """The module's layer, or None for the wiring (which stands apart)."""
    if module in WIRING:
        return None
    return longest(module, LAYERS)


def layer_problem(module: str, target: str) -> str | None:
    """Why importing `target` from `module` breaks the layers, or None."""
    if target in WIRING and module not in WIRING and target != "monitor":
        return f"{module} imports the wiring module {target} (read settings through django.conf)"
    source, dest = layer(module), layer(target)
    if source is None or dest is None:
        return None
    if LAYER_ORDER.index(dest) < LAYER_ORDER.index(source):
        return f"{module} ({source}) imports {target} ({dest}): imports point down the layers"
    web_from, web_to = longest(module, WEB_INTERFACES), longest(target, WEB_INTERFACES)
    if web_from and web_to and web_from != web_to:
        return f"{module} imports {target}: the web interfaces ({web_from}, {web_to}) do not import each other"
    return None


def problems() -> list[str]:
    modules = project_files(PACKAGES)
    edges = graph(modules)
    found = [f"import cycle: {' <-> '.join(component)}" for component in cycles(edges)]
    for path in project_files(SIZED).values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_LINES})")
    root = sorted(p.name for p in (ROOT / "monitor").glob("*.py"))
    if len(root) > MAX_ROOT_MODULES:
        found.append(f"monitor/ root holds {len(root)} modules (at most {MAX_ROOT_MODULES}): {', '.join(root)}")
    for module, path in modules.items():
        if module not in WIRING and layer(module) is None:
            found.append(f"{path.relative_to(ROOT)}: {module} belongs to no layer (add its package to LAYERS)")
        for name, taken, line in imports(module, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            target = resolve(name, modules)
            if is_pure(module):
                top = name.split(".")[0]
                if target is not None and not is_pure(target):
                    found.append(f"{where}: pure core {module} imports {target}")
                elif target is None and top not in PURE_MAY_IMPORT:
                    found.append(f"{where}: pure core {module} imports {name}")
            if (target or "").startswith("audits") and module.startswith("monitor") and not within(module, AUDITS_USERS):
                found.append(f"{where}: {module} imports {target} (only {', '.join(AUDITS_USERS)} may import audits)")
            if target is not None and (problem := layer_problem(module, target)):
                found.append(f"{where}: {problem}")
            if taken.startswith("_") and not taken.startswith("__") and target not in (None, module):
                owner = name.rpartition(".")[0]
                if resolve(owner, modules) != module:
                    found.append(f"{where}: {module} takes the private name {taken} from {owner}")
    return found


def main(argv: list[str]) -> int:
    if "--graph" in argv:
        for module, targets in sorted(graph(project_files(PACKAGES)).items()):
            for target in sorted(targets):
                print(f"{module} -> {target}")
        return 0
    found = problems()
    for problem in found:
        print(problem)
    modules = project_files(PACKAGES)
    print(f"layout: {len(modules)} modules, {sum(len(t) for t in graph(modules).values())} imports, "
          f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
