"""The README's Layout, held against the code: every arrow points down (a module imports
only from its own layer or the layers below it) and no two modules import each other,
directly or round a loop. Imports inside functions count too; TYPE_CHECKING ones do not."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("chatsite", "conversations", "accounts", "moderation")

# Top to bottom, as the README draws them; a module's layer is its longest listed prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "entry",
        (
            "chatsite.urls",
            "chatsite.asgi",
            "chatsite.serve",
            "chatsite.lifecycle",
            "conversations.views",
            "conversations.action_views",
            "conversations.share_views",
            "conversations.attachment_views",
            "conversations.consumers",
            "conversations.admin",
            "conversations.demo",
            "conversations.demo_urls",
            "conversations.urls",
            "conversations.routing",
            "conversations.management",
            "conversations.apps",
            "conversations.templatetags",
            "conversations.context_processors",
            "accounts.views",
            "accounts.admin",
            "accounts.urls",
            "accounts.management",
            "accounts.apps",
            "accounts.forms",
            "accounts.context_processors",
            "accounts.middleware",
            "accounts.sso",
            "accounts.user_admin",
            "moderation.admin",
            "moderation.access",
            "moderation.overview",
            "moderation.apps",
            "moderation.management",
        ),
    ),
    ("account ops", ("accounts.services", "accounts.throttling")),
    ("streaming", ("conversations.streaming",)),
    (
        "writes",
        (
            "conversations.services",
            "conversations.turn_services",
            "conversations.share_services",
            "conversations.attachment_services",
            "conversations.portability.writing",
            "moderation.services",
            "moderation.screening",
            "accounts.quotas",
        ),
    ),
    (
        "reads",
        (
            "conversations.selectors",
            "conversations.message_selectors",
            "conversations.usage_selectors",
            "conversations.share_selectors",
            "conversations.attachment_selectors",
            "conversations.search",
            "conversations.fragments",
            "conversations.catalog",
            "conversations.portability",
            "conversations.grouping",
            "accounts.selectors",
            "moderation.selectors",
        ),
    ),
    # Everything else: models, upstream, gate, settings, layers, … and model text to HTML,
    # named here top to bottom (ground modules import each other, round no loop).
    (
        "ground",
        (
            "conversations.growing",
            "conversations.splitting",
            "conversations.rendering",
            "conversations.formulas",
            "conversations.code_blocks",
            "conversations.inspecting",  # also run alone, in a child process: no Django
            *APPS,
        ),
    ),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    best, length = "ground", -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = name, len(prefix)
    return best


def _modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks draw no arrow
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_every_arrow_points_down() -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in _graph().items()
        for target in targets
        if RANK[layer_of(target)] < RANK[layer_of(module)]
    ]
    assert not upward, "\n".join(sorted(upward))


def test_no_modules_import_each_other_round_a_loop() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    loops: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                loops.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not loops, "\n".join(" -> ".join(loop) for loop in loops)


def test_the_file_checker_run_in_a_child_process_needs_no_django() -> None:
    # conversations/inspecting.py runs alone (python -I), without the project's settings.
    tree = ast.parse((ROOT / "conversations" / "inspecting.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {"django", "chatsite", "conversations", "accounts", "moderation", ""}
