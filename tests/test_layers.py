"""The layers a newcomer can see, checked from the source: the package is an order of
subpackages, each importing only those below it (the method contract at the bottom,
compositions above it, commands and the server on top), and no modules import each other in
a circle. Imports are read with `ast` (nothing is imported); lazy imports inside functions
and imports only for type checking count too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "lookalike"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_command_side(module: str) -> bool:
    return module == "lookalike.cli" or module.startswith("lookalike.commands")


# Bottom to top. A module may import from its own layer and those below; `lookalike/__init__.py`
# (the face) imports nothing at load time and is checked apart. The registry finds the methods
# by module name (`lookalike.features.registry.METHOD_MODULES`), not by importing them.
LAYERS = [
    {"lookalike.errors", "lookalike.extras"},
    {"lookalike.imaging"},
    {"lookalike.nets"},
    {"lookalike.features"},
    {"lookalike.ocr"},
    {"lookalike.matching"},
    {"lookalike.methods"},
    {"lookalike.retrieval"},
    {"lookalike.gallery"},
    {"lookalike.engines"},
    {"lookalike.evaluation"},
    {"lookalike.grouping"},
    {"lookalike.training"},
    {"lookalike.server"},
    {"lookalike.api"},
    {"lookalike.commands", "lookalike.cli"},
]


def layer_of(module: str) -> int:
    for position, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return position
    raise AssertionError(f"{module} is in no layer: add its subpackage to LAYERS")


def all_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level, inside functions or for type checking."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported(module: str) -> dict[str, set[str]]:
    """The lookalike modules `module` imports -> the names it takes from each."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in all_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, "") for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            # `from a import b` imports submodule a.b when there is one, else name b of a
            targets = [(f"{base}.{alias.name}", "") if f"{base}.{alias.name}" in MODULES
                       else (base, alias.name) for alias in node.names]
        for target, name in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.setdefault(target, set()).add(name)
    return found


GRAPH = {module: imported(module) for module in MODULES}
LIBRARY = [m for m in MODULES if not is_command_side(m) and m != "lookalike"]


def test_the_graph_sees_lazy_and_type_only_imports():
    """Guards the parser: these imports exist, at module level and inside a function, and an
    import under `if TYPE_CHECKING:` is seen too."""
    assert "lookalike.features.extract" in GRAPH["lookalike.evaluation.compare"]
    assert "lookalike.evaluation.compare_report" in GRAPH["lookalike.evaluation.compare"]
    assert "lookalike.commands.common" in GRAPH["lookalike.cli"]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lookalike.api\n"
    assert [node.names[0].name for node in all_imports(ast.parse(source))[1:]] == ["lookalike.api"]


def test_every_module_is_in_a_layer_and_the_top_holds_few():
    assert all(layer_of(module) >= 0 for module in MODULES if module != "lookalike")
    top = [path.name for path in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top


def test_no_module_imports_a_layer_above_its_own():
    upward = sorted(f"{module} -> {target}" for module in MODULES if module != "lookalike"
                    for target in GRAPH[module]
                    if target != "lookalike" and layer_of(target) > layer_of(module))
    assert upward == []


def test_the_face_imports_nothing_but_the_standard_library():
    """`lookalike/__init__.py` names its verbs by module path and imports them when used."""
    assert set(GRAPH["lookalike"]) == set()


def test_library_modules_take_only_the_version_from_the_package():
    """`lookalike/__init__.py` is the public face, importing the library lazily; a library
    module that imported it would lean on the layer above."""
    uses = {module: GRAPH[module]["lookalike"] for module in LIBRARY if "lookalike" in GRAPH[module]}
    assert all(names == {"__version__"} for names in uses.values()), uses


def test_no_import_cycle_at_all():
    edges = {m: {t for t in GRAPH[m] if t != "lookalike"} for m in MODULES if m != "lookalike"}
    done: set[str] = set()

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for target in sorted(edges[module]):
            found = cycle_from(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    cycles = [cycle for module in edges if (cycle := cycle_from(module, []))]
    assert cycles == [], " -> ".join(cycles[0]) if cycles else ""


def test_every_command_file_is_listed_in_the_cli():
    """Adding a command is its file in commands/ plus its name in `cli.COMMANDS`."""
    from lookalike.cli import COMMANDS

    files = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "common"}
    assert sorted(COMMANDS) == sorted(files)


def test_import_lookalike_is_cheap_and_every_exported_name_resolves():
    script = (
        "import sys, lookalike\n"
        "heavy = [m for m in ('numpy', 'PIL', 'cv2', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in lookalike.__all__ if getattr(lookalike, n, None) is None]\n"
        "assert not missing, missing\n"
        "import lookalike.evaluation.compare, lookalike.gallery.identify\n"
        "assert callable(lookalike.compare) and callable(lookalike.identify)\n"
        "assert 'fastapi' not in sys.modules and 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_building_every_parser_imports_no_deep_learning_or_web_framework():
    """What keeps `lookalike --help` fast: commands import torch, fastapi and the plotting
    and learning libraries inside `run`."""
    script = (
        "import sys\n"
        "from lookalike.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'fastapi', 'uvicorn', 'matplotlib', 'sklearn', 'kornia',"
        " 'onnxruntime', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
