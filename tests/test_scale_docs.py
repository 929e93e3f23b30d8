"""docs/scale.md: the recipes run as written (the distributed ones as scripts, gloo on CPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "scale.md"
SRC = Path(__file__).resolve().parents[1] / "src"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def run_script(code: str, tmp_path: Path, timeout: float = 180.0) -> str:
    script = tmp_path / "recipe.py"
    script.write_text(code)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_page_has_its_three_recipes() -> None:
    assert len(BLOCKS) == 3
    assert "FIGURES" not in DOC.read_text()


def test_meta_device_recipe(capsys) -> None:
    exec(compile(BLOCKS[0], str(DOC), "exec"), {"__name__": "docs"})
    assert "meta == eager, bit for bit" in capsys.readouterr().out


@pytest.mark.slow
def test_fsdp2_recipe(tmp_path) -> None:
    assert "every shard holds the one-process values" in run_script(BLOCKS[1], tmp_path)


@pytest.mark.slow
def test_tensor_parallel_recipe(tmp_path) -> None:
    assert "fan_in 128" in run_script(BLOCKS[2], tmp_path)
