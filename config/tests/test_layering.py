"""Imports run one way (DESIGN.md, Layering): config (the kernel) <- accounts <- projects <- rights <-
generation <- the composition root (config/urls.py, asgi.py, wsgi.py, routing.py, dashboard.py). The graph is read from
the source with `ast`: every import of a project module, at module level or inside a function (an import
under `if TYPE_CHECKING:` is for annotations only and is left out). Tests and migrations are not layered.

- No import runs upward.
- No circle between project modules, in any layer.
- No module imports another module's private (underscore) name: a read that bypasses the tenant scope
  is a public selector whose name says so (`dangerously_*`), never a private helper borrowed elsewhere.
- No two view classes (a name ending in View or Page) are defined under the same name: the API's end in
  View, the portal's in Page.
- The tenant scope is bypassed (`dangerously_unscoped()`) only in the functions of UNSCOPED_BY_DESIGN,
  each for a reason given there: a new bypass fails until it is named there, and a removed one too.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("config", "accounts", "projects", "rights", "generation")
COMPOSITION_ROOT = {"config.urls", "config.asgi", "config.wsgi", "config.routing", "config.dashboard"}

# Where a read or write crosses organizations on purpose, by reason.
UNSCOPED_BY_DESIGN = {
    # Before any scope exists: who is signing in, with which key, invitation or session.
    ("accounts.live_sessions", "session_end_reason"), ("accounts.selectors", "api_key_by_plaintext"),
    ("accounts.selectors", "membership_of"), ("accounts.selectors", "memberships_of_user"),
    ("accounts.services", "api_key_touch"), ("accounts.services", "invitation_by_token"),
    ("generation.review", "share_open"),  # a share link's token: its holder has no account and no scope yet
    # Operators: the admin site, and the metrics' totals over every organization.
    ("config.admin", "PlatformAdminSite.admin_view.unscoped_view"), ("config.metrics", "DatabaseCollector.collect"),
    # System work of the workers and sweeps, on ids of every organization (each step then runs in its own scope).
    ("generation.queue.dispatch", "_send_steps"), ("generation.pipeline.steps", "_job_completed"),
    ("generation.pipeline.steps", "jobs_advance_stalled"), ("generation.pipeline.steps", "step_claim_next"),
    ("generation.pipeline.steps", "step_release"), ("generation.pipeline.steps", "step_renew_lease"),
    ("generation.pipeline.steps", "steps_requeue_expired"), ("generation.pipeline.steps", "steps_resume"),
    ("generation.retention", "_artifact_delete"), ("generation.retention", "_expired_page"),
    ("generation.webhooks", "webhook_deliver"), ("generation.webhooks", "webhook_due_deliveries"),
    ("rights.registry.services", "registration_anchor_batch"), ("rights.registry.services", "registration_batches_send"),
    ("rights.registry.services", "registration_revoke"), ("rights.registry.services", "registrations_confirm"),
    ("rights.fingerprints", "fingerprint_buckets_rebuild"),
    # The public template library, shared by every organization.
    ("projects.templates", "UnscopedQuery.__getitem__"), ("projects.templates", "UnscopedQuery.count"),
    ("projects.templates", "_reading"), ("projects.templates", "template_get_for_use"),
    ("projects.templates", "template_list"),
    # Ownership is global: the fingerprint search, the infringement check and verification's reads.
    ("rights.fingerprints", "fingerprint_search"), ("rights.services", "infringement_matches"),
    ("rights.verification", "dangerously_contents"),
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    name: str  # the imported name ("" for `import x` or the module itself)
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    modules = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            relative = path.relative_to(ROOT).parts
            if "tests" in relative or "migrations" in relative:
                continue
            modules[_module_name(path)] = path
    return modules


def _resolve(name: str) -> str | None:
    """The project module `name` is, or is inside (a package's attribute, a module's name)."""
    modules = project_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _imports(module: str, path: Path) -> list[Edge]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: list[Edge] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            targets: list[tuple[str, str]] = []  # (dotted name, imported name)
            if isinstance(child, ast.Import):
                targets = [(alias.name, "") for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:
                    # `from pkg import module` names a module; `from module import name` a name in it.
                    target = _resolve(f"{base}.{alias.name}")
                    targets.append((f"{base}.{alias.name}" if target == f"{base}.{alias.name}" else base,
                                    "" if target == f"{base}.{alias.name}" else alias.name))
            for dotted, name in targets:
                target = _resolve(dotted)
                if target and target != module:
                    edges.append(Edge(module, target, name, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return edges


@cache
def import_graph() -> tuple[Edge, ...]:
    return tuple(edge for module, path in sorted(project_modules().items()) for edge in _imports(module, path))


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def upward_imports() -> set[tuple[str, str]]:
    return {(edge.source, edge.target) for edge in import_graph()
            if edge.source not in COMPOSITION_ROOT and layer_of(edge.target) > layer_of(edge.source)}


def circles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in import_graph():
        graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(project_modules()):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
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
                    work.append((child, iter(sorted(graph[child]))))
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


def test_the_graph_is_read_from_the_source():
    """The reader sees what it must: the modules of every layer, and imports at both levels."""
    modules = project_modules()
    assert {module.split(".")[0] for module in modules} == set(LAYERS)
    edges = import_graph()
    assert any(edge.source == "generation.queue.worker" and edge.target == "generation.pipeline.steps" for edge in edges)
    assert any(edge.in_function for edge in edges)


def test_imports_run_downward():
    upward = sorted(upward_imports())
    assert not upward, "imports that run upward (move the code down, or send a signal the upper app subscribes to):\n" + \
        "\n".join(f"  {source} -> {target}" for source, target in upward)


def test_no_circle_between_modules():
    found = circles()
    assert not found, "import circles:\n" + "\n".join("  " + " <-> ".join(circle) for circle in found)


def test_no_private_name_is_imported_from_another_module():
    borrowed = sorted(f"{edge.source}:{edge.line} imports {edge.target}.{edge.name}" for edge in import_graph()
                      if edge.name.startswith("_"))
    assert not borrowed, "private names used across modules (make them public, named for what they do):\n" + \
        "\n".join(f"  {line}" for line in borrowed)


def unscoped_uses() -> set[tuple[str, str]]:
    """(module, enclosing function as Class.method) of every call of dangerously_unscoped()."""
    found = set()
    for module, path in project_modules().items():
        if module == "config.tenancy":  # where it is defined
            continue

        def visit(node: ast.AST, names: list[str]) -> None:
            for child in ast.iter_child_nodes(node):
                inner = names + [child.name] if isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else names
                if isinstance(child, ast.Call):
                    called = child.func
                    name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")
                    if name == "dangerously_unscoped":
                        found.add((module, ".".join(names) or "<module>"))
                visit(child, inner)

        visit(ast.parse(path.read_text(), str(path)), [])
    return found


def test_the_tenant_scope_is_bypassed_only_where_named():
    uses = unscoped_uses()
    new = sorted(uses - UNSCOPED_BY_DESIGN)
    assert not new, "dangerously_unscoped() outside the named bypasses (scope the read, or name it in " \
        "UNSCOPED_BY_DESIGN with its reason):\n" + "\n".join(f"  {module}: {function}" for module, function in new)
    gone = sorted(UNSCOPED_BY_DESIGN - uses)
    assert not gone, "no longer unscoped, take them off UNSCOPED_BY_DESIGN:\n" + \
        "\n".join(f"  {module}: {function}" for module, function in gone)


def view_classes() -> dict[str, list[str]]:
    """{class name: [modules defining it]} of the classes named ...View or ...Page."""
    found: dict[str, list[str]] = defaultdict(list)
    for module, path in sorted(project_modules().items()):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("View", "Page")):
                found[node.name].append(module)
    return found


def test_no_two_views_share_a_class_name():
    shared = {name: modules for name, modules in view_classes().items() if len(modules) > 1}
    assert not shared, "view classes defined twice:\n" + "\n".join(
        f"  {name}: {', '.join(modules)}" for name, modules in sorted(shared.items()))


def test_the_checks_fail_on_what_they_forbid(tmp_path, monkeypatch):
    """An upward import inside a function, a circle and a borrowed private name are each seen."""
    import config.tests.test_layering as layering

    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "accounts" / "low.py").write_text("def f():\n    from generation.high import thing\n")
    (tmp_path / "generation" / "high.py").write_text("from generation import other\nthing = 1\n"
                                                      "class JobPage:\n    pass\n")
    (tmp_path / "generation" / "other.py").write_text("from generation.high import thing as _t\n"
                                                       "from generation.high import _private\n"
                                                       "def read():\n    with dangerously_unscoped():\n        pass\n")
    monkeypatch.setattr(layering, "ROOT", tmp_path)
    for cached in (project_modules, import_graph):
        cached.cache_clear()
    try:
        assert ("accounts.low", "generation.high") in upward_imports()
        assert [edge.in_function for edge in import_graph() if edge.source == "accounts.low"] == [True]
        assert circles() == [["generation.high", "generation.other"]]
        assert [edge.name for edge in import_graph() if edge.name.startswith("_")] == ["_private"]
        assert unscoped_uses() == {("generation.other", "read")}
        (tmp_path / "accounts" / "low.py").write_text("class JobPage:\n    pass\n")
        assert view_classes() == {"JobPage": ["accounts.low", "generation.high"]}
    finally:
        for cached in (project_modules, import_graph):
            cached.cache_clear()
