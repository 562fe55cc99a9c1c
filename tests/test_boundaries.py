"""The import rules of stilts_ds, checked against the one table that states them.

The table is the "Layers and imports" table of docs/architecture.md (between the
``<!-- import-rules -->`` markers): one row per layer (a top-level module or package of
stilts_ds), the stilts_ds names it may import, and which of the restricted third-party
packages (the ones the last column's header names: ray, deepspeed) it may import. The doc is
the rule, so the doc and the check cannot drift: edit the table, and this test enforces the
edit.

    .venv/bin/python -m pytest tests/test_boundaries.py -q

Checked:

* the table itself: every layer of the package has exactly one row and every row names an
  existing layer; every name a row allows exists; and it allows only layers listed *below*
  it, so imports point down and layers never form a cycle;
* every import statement of every module (module level and inside functions, relative
  ``from . import x`` resolved, ``importlib.import_module("...")`` with a literal name too):
  an import of another layer must be allowed by the importer's row, and ray/deepspeed only
  where the row says; a failure names ``file:line`` and the rule broken;
* dynamically: importing every module of the layers that cannot reach ray or deepspeed
  through the table (their allowed layers, transitively) loads neither, in a fresh
  interpreter (an import hidden from ``ast`` would show here).

Inside a layer modules import each other freely (studies' graph, arms and pipeline refer to
each other from inside functions); the rules are between layers.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "stilts_ds"  # the checkout's source, whatever copy is installed
DOC = REPO / "docs" / "architecture.md"
BEGIN, END = "<!-- import-rules -->", "<!-- /import-rules -->"
INIT = "__init__"  # the row of stilts_ds/__init__.py (the package root: its version string)
# The packages DESIGN.md keeps out of task, metric and modeling code (the first checks here).
PURE = ("tasks", "metrics", "modeling", "evaluation")


# ------------------------------------------------------------------------ the package


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """Every module of stilts_ds by dotted name (a package by its __init__.py)."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


SOURCES = _sources()
# Packages include folders of modules without an __init__.py (namespace packages).
MODULES = set(SOURCES) | {".".join(m.split(".")[:i]) for m in SOURCES for i in range(1, m.count(".") + 1)}


def layer_of(module: str) -> str:
    """stilts_ds.engine.worker -> engine; stilts_ds -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else INIT


# ----------------------------------------------------------------------- the imports


@dataclass(frozen=True)
class Imp:
    target: str  # dotted, absolute: stilts_ds.engine.tb_logger, ray.train, numpy
    line: int


def _resolve_from(node: ast.ImportFrom, module: str, is_pkg: bool) -> list[str]:
    if node.level:  # relative: level 1 is the module's own package
        package = module.split(".") if is_pkg else module.split(".")[:-1]
        base_parts = package[:len(package) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        # `from stilts_ds.engine import tb_logger` imports the module stilts_ds.engine.tb_logger;
        # `from stilts_ds.tasks.formats import get_format` imports a name of the package.
        out.append(sub if sub in MODULES else base)
    return out


def imports_of(module: str, source: str | None = None) -> list[Imp]:
    """Every import of ``module`` (its file, or ``source`` given as if it were that file)."""
    path = SOURCES.get(module)
    is_pkg = path is not None and path.name == "__init__.py"
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):  # every level: module, function, class, if/try bodies
        if isinstance(node, ast.Import):
            found += [Imp(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [Imp(t, node.lineno) for t in _resolve_from(node, module, is_pkg)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in ("import_module", "__import__"):
                found.append(Imp(node.args[0].value, node.lineno))
    return found


# ------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    layer: str
    may_import: tuple[str, ...]  # dotted names under stilts_ds: a layer, or one module of it
    third_party: tuple[str, ...]  # of the restricted packages
    line: int  # in the doc


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def read_table(text: str) -> tuple[tuple[str, ...], list[Row]]:
    """(restricted third-party packages, rows top to bottom) from the doc's marked table."""
    lines = text.splitlines()
    start = next(i for i, s in enumerate(lines) if s.strip() == BEGIN)
    end = next(i for i, s in enumerate(lines) if s.strip() == END)
    body = [(i + 1, s) for i, s in enumerate(lines[start + 1:end], start + 1) if s.strip().startswith("|")]
    header, rows = _cells(body[0][1]), []
    assert len(header) == 4, f"{DOC}:{body[0][0]}: the import table has 4 columns, not {header}"
    restricted = tuple(_names(header[3]))
    for lineno, line in body[2:]:  # after the header and the |---| line
        cells = _cells(line)
        assert len(cells) == 4, f"{DOC}:{lineno}: a row of 4 cells expected: {line}"
        (layer,) = _names(cells[0])
        rows.append(Row(layer, tuple(_names(cells[2])), tuple(_names(cells[3])), lineno))
    return restricted, rows


RESTRICTED, ROWS = read_table(DOC.read_text(encoding="utf-8"))
BY_LAYER = {r.layer: r for r in ROWS}


def _allows(row: Row, target: str) -> bool:
    rel = target.split(".", 1)[1] if "." in target else INIT
    return any(rel == name or rel.startswith(name + ".") for name in row.may_import)


def test_the_table_covers_every_layer_once_and_points_down():
    layers = {layer_of(m) for m in SOURCES}
    listed = [r.layer for r in ROWS]
    problems = [f"{DOC}: no row for the layer {name!r} (stilts_ds.{name})" for name in sorted(layers - set(listed))]
    problems += [f"{DOC}:{r.line}: row {r.layer!r} names no module of stilts_ds" for r in ROWS if r.layer not in layers]
    problems += [f"{DOC}: layer {name!r} has several rows" for name in sorted({n for n in listed if listed.count(n) > 1})]
    for i, row in enumerate(ROWS):
        below = {r.layer for r in ROWS[i + 1:]}
        for name in row.may_import:
            if f"stilts_ds.{name}" not in MODULES:
                problems.append(f"{DOC}:{row.line}: {row.layer} may import {name!r}, which is no module of stilts_ds")
            elif name.split(".")[0] not in below:
                problems.append(f"{DOC}:{row.line}: {row.layer} may import {name!r}, which is not listed below it "
                                "(imports point down: move the row, or drop the permission)")
        problems += [f"{DOC}:{row.line}: {row.layer}: {p!r} is not one of the restricted packages {RESTRICTED}"
                     for p in row.third_party if p not in RESTRICTED]
    # DESIGN.md's boundary: a header that stopped naming them would silently allow them everywhere.
    assert {"ray", "deepspeed"} <= set(RESTRICTED), f"{DOC}: the table's last header names {RESTRICTED}"
    assert problems == [], "\n".join(problems)


def test_every_import_follows_the_table():
    broken = []
    for module, path in SOURCES.items():
        layer = layer_of(module)
        row = BY_LAYER.get(layer)
        if row is None:
            continue  # reported by the table test
        for imp in imports_of(module):
            top = imp.target.split(".")[0]
            where = f"{path.relative_to(ROOT.parent)}:{imp.line}"
            if top == "stilts_ds":
                if layer_of(imp.target) == layer or _allows(row, imp.target):
                    continue
                broken.append(f"{where}: {module} imports {imp.target}, but the {layer!r} row of "
                              f"docs/architecture.md (line {row.line}) allows only "
                              f"{', '.join(row.may_import) or 'nothing of stilts_ds'}")
            elif top in RESTRICTED and top not in row.third_party:
                broken.append(f"{where}: {module} imports {imp.target}, but the {layer!r} row of "
                              f"docs/architecture.md (line {row.line}) does not allow {top} there")
    assert broken == [], "\n".join(broken)


def test_the_walker_sees_function_level_and_relative_imports():
    """The check would be hollow if it missed imports inside functions or relative ones."""
    source = ("import os\n"
              "def f():\n    from . import tb_logger\n    from ..tasks import spec\n"
              "    import ray.train\n    importlib.import_module('deepspeed')\n")
    got = [(i.target, i.line) for i in imports_of("stilts_ds.engine.worker", source)]
    assert got == [("os", 1), ("stilts_ds.engine.tb_logger", 3), ("stilts_ds.tasks.spec", 4), ("ray.train", 5),
                   ("deepspeed", 6)]
    init = imports_of("stilts_ds.tasks", "from . import spec\nfrom .formats import get_format\n")
    assert [i.target for i in init] == ["stilts_ds.tasks.spec", "stilts_ds.tasks.formats"]
    assert not _allows(BY_LAYER["metrics"], "stilts_ds.tasks.spec")


def _pure_imports(path: Path):
    """Absolute names of every import in ``path``, relative ones resolved."""
    module = _module_name(path)
    return [i.target for i in imports_of(module)]


def test_no_import_statement_names_deepspeed_or_ray():
    bad = []
    for pkg in PURE:
        for path in (ROOT / pkg).rglob("*.py"):
            bad += [f"{path}: {m}" for m in _pure_imports(path) if m.split(".")[0] in RESTRICTED]
    assert bad == []


def test_metrics_do_not_import_tasks():
    bad = []
    for path in (ROOT / "metrics").rglob("*.py"):
        bad += [f"{path}: {m}" for m in _pure_imports(path)
                if m.startswith("stilts_ds.") and not m.startswith("stilts_ds.metrics")]
    assert bad == []


def _reaches_restricted(layer: str, seen=()) -> bool:
    row = BY_LAYER.get(layer)
    if row is None:  # a layer without a row fails the table test
        return False
    return bool(row.third_party) or any(
        _reaches_restricted(name.split(".")[0], (*seen, layer)) for name in row.may_import
        if name.split(".")[0] not in seen)


def test_importing_pure_packages_loads_neither():
    """Every layer that cannot reach ray or deepspeed through the table (PURE among them)."""
    pure = sorted(r.layer for r in ROWS if not _reaches_restricted(r.layer))
    assert set(PURE) <= set(pure), pure
    modules = sorted(m for m in SOURCES if layer_of(m) in pure)
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(k for k in sys.modules if k.split('.')[0] in {RESTRICTED!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_studies_and_cli_reach_deepspeed_and_ray_only_through_the_engine():
    """Scheduling, planning and the CLI drive Ray and DeepSpeed through engine.dispatch,
    engine.launch and inference.*: not one import statement of their own (inside functions too)."""
    bad = []
    for path in [*(ROOT / "studies").rglob("*.py"), ROOT / "cli.py", ROOT / "lease.py", ROOT / "config.py"]:
        bad += [f"{path}: {m}" for m in _pure_imports(path) if m.split(".")[0] in RESTRICTED]
    assert bad == []
    for layer in ("studies", "cli", "lease", "config"):  # and the table does not permit it either
        assert BY_LAYER[layer].third_party == (), layer


# ----------------------------------------------------------------------------- format and metric names
def _named_compares(path: Path, names: set[str]) -> list[str]:
    """Comparisons (==, !=, in, not in) in ``path`` against a string literal in ``names``,
    alone or inside a tuple/list/set: a branch on a format or metric name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            consts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            found = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
            if found:
                hits.append(f"{_shown(path)}:{node.lineno}: compares with {found}")
    return hits


def _shown(path: Path) -> str:
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)



def test_format_and_metric_names_are_compared_only_in_the_task_layer():
    """Outside stilts_ds/tasks and stilts_ds/metrics, code asks a task's Format object
    (stilts_ds.tasks.formats.format_of) what to do; it never branches on which format or
    metric a task has (a table keyed by metric, such as the official file readers of
    evaluation/score.py, is a lookup, not a branch)."""
    from stilts_ds.metrics import METRICS
    from stilts_ds.tasks.formats import FORMATS

    names = set(FORMATS) | set(METRICS)
    hits = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("stilts_ds/tasks/", "stilts_ds/metrics/")):
            continue
        hits += _named_compares(path, names)
    assert hits == [], "\n".join(hits)


def test_the_name_check_catches_a_branch(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('def f(spec):\n    if spec.format == "span_qa":\n        return 1\n'
                   '    return spec.metric in ("bucc_f1", "x")\n')
    hits = _named_compares(bad, {"span_qa", "bucc_f1"})
    assert len(hits) == 2
