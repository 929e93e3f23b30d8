"""The zoo's numbers in README.md and docs/zoo.md are what ``scripts/zoo_table.py`` measures now.

Verdicts and untouched counts must match exactly; each log2 within ``TOL = 0.05`` bit: a run is
deterministic (fixed generators, the model built after ``torch.manual_seed(0)``), so between
machines only the float summation order changes a std (about 1e-6 relative, 1e-6 bit), and the
table rounds to 0.005; anything beyond 0.05 bit is a change in the library or the models.
Times are not compared."""

from __future__ import annotations

import importlib.util
import math
import re
import warnings
from pathlib import Path
from types import ModuleType

import pytest
from zoo_models import ZOO, ZooModel, unavailable

pytestmark = pytest.mark.zoo

ROOT = Path(__file__).resolve().parents[2]
TOL = 0.05


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zoo_table", ROOT / "scripts" / "zoo_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo_table = _script()


def _written(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    found = re.search(r"<!-- zoo-table:start -->\n(.*?)\n<!-- zoo-table:end -->", text, re.DOTALL)
    assert found, f"{path}: no zoo-table markers"
    return found.group(1)


TEXT = {p.name: _written(p) for p in (ROOT / "README.md", ROOT / "docs" / "zoo.md")}
DOCS = {name: zoo_table.parse_table(text) for name, text in TEXT.items()}


def _close(now: float, written: float) -> bool:
    """Within TOL; n/a (nan: no usable gradient, e.g. behind a zero head) matches only n/a."""
    if math.isnan(now) or math.isnan(written):
        return math.isnan(now) and math.isnan(written)
    return abs(now - written) <= TOL


def test_readme_and_docs_show_the_same_full_table() -> None:
    assert TEXT["README.md"] == TEXT["zoo.md"]  # one run wrote both
    assert set(DOCS["zoo.md"]) == {z.name for z in ZOO}


@pytest.mark.parametrize("z", ZOO, ids=[z.name for z in ZOO])
def test_written_numbers_match_a_new_run(z: ZooModel) -> None:
    why = unavailable(z.library)
    if why is not None:
        pytest.skip(why)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        now = zoo_table.measure(z)
    written = DOCS["zoo.md"][z.name]
    assert now["untouched"] == written["untouched"]
    for init in ("own", "auto"):
        (fwd, bwd, verdict), (w_fwd, w_bwd, w_verdict) = now[init], written[init]
        assert verdict == w_verdict, (init, verdict, w_verdict)
        assert _close(fwd, w_fwd) and _close(bwd, w_bwd), (init, fwd, bwd, w_fwd, w_bwd)
