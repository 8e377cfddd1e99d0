"""Layers without cycles: the import graph of ``funasr_nano/``, read from the source with ``ast``.

Every module is parsed; every import counts, module-level or inside a function, absolute or relative
(``from . import x`` resolves to the module ``x``). Imports under ``if TYPE_CHECKING:`` are left out: they
never run, and exist only for annotations. Strings given to importlib are not read from the source: the only
ones are the family registry's hooks (``"funasr_nano.export.thinker_gguf:export_gguf_folder"``,
:class:`funasr_nano.models.family.Family`), which name code above ``models`` and are resolved by their
consumer; :func:`test_family_hooks_resolve_below_their_consumer` imports the registry and checks each.

A *unit* is a sub-package (``funasr_nano.models``, ``.engines``, ...) or a top-level module (``load.py``,
``options.py``, ...); ``funasr_nano`` itself (``__init__.py``, the public API) is a unit too. The rules:

- each unit has a layer in :data:`LAYERS` and imports only from units in lower layers; units sharing a layer
  import neither each other nor anything above (an upward import, such as server -> cli, fails the test);
- no cycle between modules, not even one kept apart by a function-local import (such a cycle within a package
  is still a cycle: the two modules cannot be read or tested one without the other);
- no private name (``_x``) imported from another module, neither ``from .a import _x`` nor ``a._x``.

The same order is written down in docs/layout.md. A failure names the module, the line and the import.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re
from collections import defaultdict

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "funasr_nano"

#: Lowest first. A unit may import from units in earlier entries only; units in one entry are beside each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("version", "errors"),    # leaves: the version string, the error hierarchy
    ("validation",),          # the checks option dataclasses run on their values (raise InvalidOptionError)
    ("audio",),               # any input -> 16 kHz mono float32, VAD (VadOptions)
    ("options",),             # the option dataclasses (hold VadOptions)
    ("results", "option_docs"),  # typed results (hold their options); field docs + choices (CLI, HTTP)
    ("models",),              # a speech-LLM family: audio path, prompts, LLMInput, checkpoints, LoRA
    ("export",),              # a family's weights in other formats (GGUF, ONNX, transformers); their checks
    ("engines",),             # LLMInput -> tokens (transformers, llama.cpp on GGUF files, vLLM)
    ("pipeline",),            # SpeechModel: transcribe, stream, translate
    ("load",),                # load_model: checkpoint -> family -> engine -> SpeechModel
    ("writers", "manifests"),  # results -> txt / json / srt / vtt / tsv; JSONL manifests <-> examples
    ("training", "corpus"),   # beside each other: training a family; a loaded model over a corpus
    ("testing",),             # tiny random checkpoints (tests, benchmarks and `funasr-nano tiny`)
    ("server",),              # the OpenAI-compatible HTTP server
    ("cli",),                 # the command line (serve starts the server)
    (PACKAGE,),               # funasr_nano/__init__.py: the public API
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module (and name) at one place of the source."""

    source: str          # the importing module, "funasr_nano.server.schema"
    target: str          # the imported module, "funasr_nano.cli.options"
    name: str | None     # the name taken from target ("CHOICES"), None when the module itself is imported
    path: str            # the importing file, relative to the repository
    line: int
    local: bool          # inside a function (runs on call)
    code: str            # the import statement as written

    def where(self) -> str:
        return f"{self.path}:{self.line}{' (function-local)' if self.local else ''}: {self.code}"


def find_modules(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    """Every module of the package: dotted name -> file (a package's name -> its __init__.py)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def unit(module: str) -> str:
    """The unit a module belongs to: "funasr_nano.models.base" -> "models", "funasr_nano.load" -> "load"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Reader(ast.NodeVisitor):
    """Collects the imports of one module, and the private attributes read from imported modules."""

    def __init__(self, module: str, path: pathlib.Path, root: pathlib.Path, modules: dict[str, pathlib.Path]):
        self.module, self.modules = module, modules
        self.is_package = path.name == "__init__.py"
        self.path = path.relative_to(root).as_posix()
        self.lines = path.read_text(encoding="utf-8").splitlines()
        self.depth = 0                      # > 0 inside a function
        self.imports: list[Import] = []
        self.aliases: dict[str, str] = {}   # a local name bound to one of our modules -> that module
        self.private_attributes: list[tuple[int, str, str]] = []  # (line, module, attribute)

    def _code(self, node: ast.stmt) -> str:
        return " ".join(line.strip() for line in self.lines[node.lineno - 1:node.end_lineno])

    def _add(self, node: ast.stmt, target: str, name: str | None) -> None:
        self.imports.append(Import(self.module, target, name, self.path, node.lineno, self.depth > 0,
                                   self._code(node)))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                self._add(node, alias.name, None)
                # "import a.b.c" binds "a"; "import a.b.c as m" binds m to a.b.c
                self.aliases[alias.asname or PACKAGE] = alias.name if alias.asname else PACKAGE

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != PACKAGE:
            return
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            if submodule in self.modules:  # "from . import x": the module x
                self._add(node, submodule, None)
                self.aliases[alias.asname or alias.name] = submodule
            else:
                self._add(node, target, alias.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_private(node.attr):
            dotted = _dotted(node.value)
            if dotted:
                head, _, rest = dotted.partition(".")
                if head in self.aliases:
                    module = ".".join(filter(None, (self.aliases[head], rest)))
                    if module in self.modules and module != self.module:
                        self.private_attributes.append((node.lineno, module, node.attr))
        self.generic_visit(node)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@dataclasses.dataclass
class Graph:
    modules: dict[str, pathlib.Path]
    imports: list[Import]
    private_attributes: list[str]  # "path:line: module._name"


def read_graph(root: pathlib.Path = ROOT) -> Graph:
    """The import graph of the package under ``root``."""
    modules = find_modules(root)
    imports, private_attributes = [], []
    for module, path in modules.items():
        reader = _Reader(module, path, root, modules)
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for imported in reader.imports:
            assert imported.target in modules, f"{imported.where()}: no module {imported.target} in {PACKAGE}/"
        imports += reader.imports
        private_attributes += [f"{reader.path}:{line}: {target}.{name}"
                               for line, target, name in reader.private_attributes]
    return Graph(modules, imports, private_attributes)


def upward_imports(graph: Graph) -> list[str]:
    """Every import of a unit from its own layer or a higher one, as a readable line."""
    found = []
    for imported in graph.imports:
        source, target = unit(imported.source), unit(imported.target)
        if source == target or source not in RANK or target not in RANK:  # no layer: test_every_unit_has_a_layer
            continue
        if RANK[target] >= RANK[source]:
            how = "beside it" if RANK[target] == RANK[source] else "above it"
            line = f"{imported.where()}  [{source} -> {target}: {target} is {how}]"
            if line not in found:  # one line per statement, not per imported name
                found.append(line)
    return found


def cycles(edges: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:  # recursion depth <= number of modules (~100)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def describe_cycles(graph: Graph, key) -> list[str]:
    """Each cycle of the graph grouped by ``key`` (a module -> its node), with the imports that close it."""
    edges: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imported in graph.imports:
        source, target = key(imported.source), key(imported.target)
        if source != target:
            edges[source][target].append(imported)
    found = []
    for component in cycles(edges):
        members = set(component)
        lines = [f"cycle between {', '.join(component)}:"]
        for source in component:
            for target, where in sorted(edges[source].items()):
                if target in members:
                    for line in dict.fromkeys(f"    {source} -> {target}: {i.where()}" for i in where):
                        lines.append(line)  # one line per statement, not per imported name
        found.append("\n".join(lines))
    return found


def private_imports(graph: Graph) -> list[str]:
    found = [f"{imported.where()}  [{imported.name} is private to {imported.target}]"
             for imported in graph.imports if imported.name and _is_private(imported.name)]
    return found + [f"{where}  [a private name read from another module]" for where in graph.private_attributes]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return read_graph()


def test_every_unit_has_a_layer(graph):
    units = {unit(module) for module in graph.modules}
    missing = sorted(units - RANK.keys())
    assert not missing, (f"no layer for {missing}: add each to LAYERS in tests/test_import_graph.py and to the "
                         "layer order in docs/layout.md")
    assert not RANK.keys() - units, f"LAYERS names units that do not exist: {sorted(RANK.keys() - units)}"


def test_layout_doc_states_the_same_layers():
    """docs/layout.md's table of layers lists the units of :data:`LAYERS`, in the same order."""
    text = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    table = text.split("## Layers", 1)[1]
    rows = re.findall(r"^\| (\d+) \| (.+?) \| .* \|$", table, flags=re.M)
    documented = tuple(tuple(re.findall(r"`(\w+)`", units.split("(")[0])) for _, units in rows)
    assert documented == LAYERS, f"docs/layout.md lists the layers {documented}, the test {LAYERS}"


def test_no_upward_import(graph):
    found = upward_imports(graph)
    assert not found, ("imports against the layer order (LAYERS in tests/test_import_graph.py, docs/layout.md):\n"
                       + "\n".join(found))


def test_no_cycle_between_units(graph):
    found = describe_cycles(graph, unit)
    assert not found, "\n".join(found)


def test_no_cycle_between_modules(graph):
    """Function-local imports count: a cycle they keep apart at import time is still a cycle."""
    found = describe_cycles(graph, lambda module: module)
    assert not found, "\n".join(found)


def test_no_private_name_across_modules(graph):
    found = private_imports(graph)
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_reader_sees_every_kind_of_import(tmp_path):
    """The checks above are only as good as the reader: a scratch package with each kind of import."""
    package = tmp_path / PACKAGE
    for folder in (package, package / "low", package / "high"):
        folder.mkdir()
        (folder / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("from ..high import b\n_hidden = 1\n")
    (package / "low" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..high.b import B\n"
        "def f():\n    from . import a\n    return a._hidden\n")
    (package / "high" / "b.py").write_text(
        "import funasr_nano.low.a as mod\nfrom funasr_nano.low.a import _hidden\n"
        "def g():\n    from ..low import c\n")
    scratch = read_graph(tmp_path)
    seen = {(i.source, i.target, i.name, i.local) for i in scratch.imports}
    assert seen == {
        ("funasr_nano.low.a", "funasr_nano.high.b", None, False),          # relative, "from .. import module"
        ("funasr_nano.low.c", "funasr_nano.low.a", None, True),            # function-local
        ("funasr_nano.high.b", "funasr_nano.low.a", None, False),          # absolute, aliased
        ("funasr_nano.high.b", "funasr_nano.low.a", "_hidden", False),
        ("funasr_nano.high.b", "funasr_nano.low.c", None, True),
    }  # and not the TYPE_CHECKING import of B
    assert describe_cycles(scratch, unit) == [
        "cycle between high, low:\n"
        "    high -> low: funasr_nano/high/b.py:1: import funasr_nano.low.a as mod\n"
        "    high -> low: funasr_nano/high/b.py:2: from funasr_nano.low.a import _hidden\n"
        "    high -> low: funasr_nano/high/b.py:4 (function-local): from ..low import c\n"
        "    low -> high: funasr_nano/low/a.py:1: from ..high import b"]
    assert [c.splitlines()[0] for c in describe_cycles(scratch, lambda m: m)] == [
        "cycle between funasr_nano.high.b, funasr_nano.low.a, funasr_nano.low.c:"]
    assert private_imports(scratch) == [
        "funasr_nano/high/b.py:2: from funasr_nano.low.a import _hidden  [_hidden is private to funasr_nano.low.a]",
        "funasr_nano/low/c.py:6: funasr_nano.low.a._hidden  [a private name read from another module]"]


#: Which unit calls each hook field of :class:`funasr_nano.models.family.Family` (resolve_hook).
HOOK_CONSUMERS = {"check_llm_gguf": "load", "export_gguf": "cli", "export_hf": "cli", "tiny": "cli"}


def test_family_hooks_resolve_below_their_consumer():
    """Every import-string hook of every registered family names an existing callable, in a module of
    ``funasr_nano`` whose layer is below the unit that resolves it (load for the GGUF check, cli for the
    exports): the string is an import the graph above cannot see, so it must obey the same order."""
    from funasr_nano.models import registry
    from funasr_nano.models.family import resolve_hook

    modules = find_modules()
    seen = 0
    for family in registry.families():
        hooks = family.hooks()
        fields = {field.partition("[")[0] for field in hooks}  # tiny[NAME] -> tiny
        assert fields <= HOOK_CONSUMERS.keys(), f"{family.name}: hooks without a consumer here: {hooks}"
        for field, spec in hooks.items():
            module = spec.partition(":")[0]
            assert module in modules, f"{family.name}.{field} = {spec!r}: no module {module} in {PACKAGE}/"
            consumer = HOOK_CONSUMERS[field.partition("[")[0]]
            assert RANK[unit(module)] < RANK[consumer], (
                f"{family.name}.{field} = {spec!r}: {unit(module)} is not below its consumer {consumer}")
            assert callable(resolve_hook(spec)), f"{family.name}.{field} = {spec!r} is not callable"
            seen += 1
    assert seen >= 7  # the built-ins: Qwen3-ASR's GGUF check, both GGUF exports, Qwen3-ASR's export hf, 3 tiny writers
