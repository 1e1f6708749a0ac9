"""The layering contract: imports go one way, fronts -> modes -> daemon -> delivery ->
submit/router -> queue/maps/config -> record/errors, and nowhere in a circle.

Every import counts, lazy ones inside functions too (parsed with ast, nothing is imported).
A new module gets its layer here: by its package, or by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MTA = ROOT / "mta"

# Top to bottom; a module may import from its own layer (without a cycle) and the ones below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("fronts", ("mta.cli.",)),
    ("modes", ("mta.modes", "mta.check", "mta.identity")),
    ("daemon", ("mta.workers", "mta.smtpd", "mta.connection", "mta.offload", "mta.process")),
    ("delivery", ("mta.delivery", "mta.mailers.", "mta.notify", "mta.mailq", "mta.queuescan", "mta.maildrop")),
    ("submit/router", ("mta.submit", "mta.router", "mta.smtp", "mta.policy", "mta.aliases", "mta.context")),
    ("queue/maps/config", ("mta.queue", "mta.maps", "mta.config", "mta.options", "mta.bdb", "mta.cdb", "mta.sdbm",
                           "mta.makemap", "mta.stats", "mta.hoststat", "mta.log", "mta.message",
                           "mta.address", "mta.access", "mta.dns", "mta.dsn", "mta.pgp", "mta.authdb",
                           "mta.groupcommit", "mta.writeback", "mta.metrics", "mta.qgroups", "mta.qf", "mta.journal",
                           "mta.queuesweep",
                           "mta.mailers", "mta.mailers.table")),  # Outcome; the mailer table
    ("record/errors", ("mta.record", "mta.errors", "mta.proctitle", "mta.__init__")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts)
    return "mta.__init__" if name == "mta.__init__" else name.removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(MTA.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """The layer whose longest name matches: a name stands for itself and what is under it,
    one ending in '.' only for what is under it."""
    best, found = -1, None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            hit = module.startswith(p) if p.endswith(".") else module == p or module.startswith(p + ".")
            if hit and len(p) > best:
                best, found = len(p), i
    return found


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The module an import names: the deepest known module that is target or its parent."""
    while target:
        if target in known:
            return target
        if target == "mta":
            return "mta.__init__"
        target = target.rpartition(".")[0]
    return None


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every mta module that module imports, at the top or inside a function."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            found = _resolve(name, known)
            if found and found != module:
                out.add(found)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_no_upward_imports():
    bad = []
    for module, deps in graph().items():
        for dep in deps:
            if layer_of(dep) is not None and layer_of(module) is not None and layer_of(dep) < layer_of(module):
                bad.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    assert not bad, "\n".join(sorted(bad))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_contract_can_fail(tmp_path):
    """The checks see lazy and relative imports, upward ones and cycles."""
    path = tmp_path / "submit.py"
    path.write_text("def f():\n    from mta import notify\n    from .delivery import attempt\n")
    known = {"mta.submit": path, "mta.notify": path, "mta.delivery.attempt": path}
    assert imports("mta.submit", path, known) == {"mta.notify", "mta.delivery.attempt"}
    assert layer_of("mta.notify") < layer_of("mta.submit")  # so submit -> notify is upward
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_notifications_submission_and_delivery_do_not_import_each_other():
    g = graph()
    assert "mta.submit" not in g["mta.notify"] and "mta.notify" not in g["mta.submit"]
    assert not {"mta.notify", "mta.delivery.attempt", "mta.delivery.schedule"} & g["mta.submit"]


def test_delivery_mode_is_decided_in_one_place():
    """Only mta/delivery/mode.py reads the DeliveryMode option; everybody else asks mode.plan()."""
    readers = [m for m, p in modules().items() if '"DeliveryMode"]' in p.read_text()]
    assert readers == ["mta.delivery.mode"]
