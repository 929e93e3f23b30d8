"""The import-layer contract of ``src/initscope`` (docs/architecture.md), read from the source.

Every ``import`` and ``from ... import`` in every module counts, at any depth (an import inside a
function is as real a dependency as one at the top). A module may import:

- anything inside its own unit (a unit is a top-level package, or ``report.views``);
- the private modules of its parent unit, for a sub-unit (``report.views`` reads ``report._rules``);
- the public names of a lower unit: no path segment after the unit's prefix and no imported
  name may start with ``_`` (``initscope._torch`` is itself a unit, the shared private helpers);
- ``initscope`` itself (the public API, which re-exports every layer) only from the top.

``initscope/__init__.py`` (it re-exports the API) and ``__main__.py`` are exempt.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "initscope"

# Lowest first. Units on one line share a rank and still may not import each other (a helper two
# of them need moves down a layer). Units that do not exist yet are allowed when they appear.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_torch",),
    ("activations",),
    ("theory",),
    ("init",),
    ("graph",),
    ("calibration",),  # data passes (LSUV) that the "lsuv" preset's plan runs
    ("policy",),
    ("report",),
    ("report.views",),  # views depend on the report, never the other way round
    ("diagnostics",),
    ("grow", "ensembles", "distributed"),
    ("",),  # `import initscope` / `from initscope import name`: the whole public API
    ("experiments",),
    ("cli",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
EXEMPT = {"initscope", "initscope.__main__"}

# Known exceptions to the layering; an entry that no longer occurs fails the test, so the
# list only gets shorter. Format: (importing module, imported module).
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # upward, by design: Report.plot/to_html/__rich__/__str__ are convenience methods that
        # import the views lazily (the views import only the report's records, never Report's
        # methods); removing them would break the public API (`report.to_html(...)`).
        ("initscope.report._report", "initscope.report.views"),
    }
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    """The longest unit prefix of a dotted ``initscope.*`` name ('' for ``initscope`` itself)."""
    rest = module.removeprefix("initscope").removeprefix(".")
    best = ""
    for unit in RANK:
        if unit and (rest == unit or rest.startswith(unit + ".")) and len(unit) > len(best):
            best = unit
    first = rest.split(".")[0]
    if not best and ((PKG / first).is_dir() or (PKG / f"{first}.py").is_file()):
        best = first  # a package the contract does not know yet
    return best  # '' also for a name of the API itself: `from initscope import diagnose`


def _imports(path: Path) -> list[tuple[str, str | None, int]]:
    """Every ``initscope`` import of ``path``: (module, name or None for the module, line)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if _ours(a.name)]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            if not _ours(source):
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if _exists(sub):  # `from pkg import submodule` imports the submodule
                    found.append((sub, None, node.lineno))
                else:
                    found.append((source, alias.name, node.lineno))
    return found


def _ours(module: str) -> bool:
    return module == "initscope" or module.startswith("initscope.")


def _exists(module: str) -> bool:
    path = SRC / module.replace(".", "/")
    return (path / "__init__.py").is_file() or path.with_suffix(".py").is_file()


def _violation(importer: str, target: str) -> str | None:
    own, other = _unit(importer), _unit(target)
    if own == other:
        return None
    if own not in RANK:
        return f"{own!r} has no layer: add it to LAYERS in tests/test_architecture.py"
    if other not in RANK:
        return f"imports {other!r}, which has no layer"
    if RANK[other] >= RANK[own]:
        return (
            f"{own or 'initscope'} (layer {RANK[own]}) imports upward or sideways from "
            f"{other or 'initscope'} (layer {RANK[other]})"
        )
    if other and own.startswith(other + "."):
        return None  # a sub-unit (report.views) may use its parent's private modules
    prefix = "initscope" + (f".{other}" if other else "")
    private = [p for p in target.removeprefix(prefix).split(".") if p.startswith("_")]
    if private and not all(p.startswith("__") and p.endswith("__") for p in private):
        return f"reaches into {other or 'initscope'}'s private {'.'.join(private)}"
    return None


def _all_violations() -> list[tuple[str, str, str]]:
    """(importer, imported module, message) for every import that breaks the contract."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        importer = _module_name(path)
        if importer in EXEMPT:
            continue
        for source, name, line in _imports(path):
            target = source if name is None else f"{source}.{name}"
            why = _violation(importer, target)
            if why is not None:
                found.append(
                    (importer, source, f"{path.relative_to(SRC)}:{line}: {why} ({target})")
                )
    return found


def test_every_module_imports_only_its_own_unit_or_lower_public_names() -> None:
    found = _all_violations()
    new = [why for importer, target, why in found if (importer, target) not in ALLOWED]
    assert not new, "import-layer violations (see docs/architecture.md):\n" + "\n".join(new)


def test_the_allow_list_only_holds_violations_that_still_occur() -> None:
    occurring = {(importer, target) for importer, target, _ in _all_violations()}
    stale = sorted(ALLOWED - occurring)
    assert not stale, f"fixed, remove from ALLOWED: {stale}"


def test_every_package_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PKG.rglob("*.py")}
    assert units <= set(RANK) | {"__main__"}, sorted(units - set(RANK) - {"__main__"})


@pytest.mark.parametrize(
    ("importer", "target", "ok"),
    [
        ("initscope.policy._plan", "initscope.graph.inspect_model", True),
        ("initscope.policy._plan", "initscope.policy._rules._private", True),
        ("initscope.graph._build", "initscope.policy.plan", False),  # upward
        ("initscope.grow", "initscope.ensembles.members", False),  # sideways
        ("initscope.cli.init", "initscope.policy._plan", False),  # private module
        ("initscope.cli.init", "initscope.diagnostics.diagnose", True),
        ("initscope.cli.init", "initscope.__version__", True),
        ("initscope.theory", "initscope.__version__", False),  # the API aggregates all layers
        ("initscope.report.views", "initscope.report.Report", True),
        ("initscope.report._report", "initscope.report.views", False),
        ("initscope.diagnostics._run", "initscope._torch.state_guard", True),
        ("initscope._torch", "initscope.activations", False),
    ],
)
def test_the_rule_itself(importer: str, target: str, ok: bool) -> None:
    assert (_violation(importer, target) is None) is ok


def test_relative_and_function_level_imports_count(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "initscope" / "theory"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_x.py").write_text(
        "from . import _y\nfrom ..policy import plan\ndef f():\n    import initscope.cli\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    found = {(m, n) for m, n, _ in _imports(fake / "_x.py")}
    assert found == {
        ("initscope.theory", "_y"),  # no such file in the fake tree: a name of the package
        ("initscope.policy", "plan"),
        ("initscope.cli", None),
    }


def _public_children(package: Path) -> list[str]:
    names = [p.stem for p in package.glob("*.py") if p.stem != "__init__"]
    names += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    return sorted(n for n in names if not n.startswith("_"))


@pytest.mark.parametrize(
    "package",
    sorted(_module_name(p.parent / "__init__.py") for p in PKG.rglob("__init__.py")),
)
def test_no_public_module_shares_its_name_with_a_function_of_its_package(package: str) -> None:
    """``import initscope.x.y as m`` gives the module: no name of the package hides it."""
    parent = importlib.import_module(package)
    for child in _public_children(SRC / package.replace(".", "/")):
        value = vars(parent).get(child)
        assert value is None or isinstance(value, types.ModuleType), (
            f"{package}.{child} is a module, but {package}'s {child!r} is "
            f"{type(value).__name__}: rename one of them"
        )
