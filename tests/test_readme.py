"""The README's Python tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python block"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_readme_commands_parse_and_name_real_files():
    """Every `initscope ...` line in the README's shell blocks is a valid command line, and the
    factory files and scripts it names exist."""
    from initscope.cli import build_parser

    root = README.parent
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S))
    commands = [line.split("#")[0].split() for line in shell.splitlines()]
    cli = [c[1:] for c in commands if c and c[0] == "initscope"]
    assert len(cli) >= 5
    parser = build_parser()
    for argv in cli:
        args = parser.parse_args(argv)  # exits (SystemExit) on a bad command line
        model = getattr(args, "model", None)
        if model is not None:
            assert (root / model.rpartition(":")[0]).is_file(), model
    for path in re.findall(r"`python ((?:scripts|benchmarks)/\S+\.py)`", README.read_text()):
        assert (root / path).is_file(), path


def test_readme_says_how_to_reach_the_command_and_the_torch_floor():
    text = README.read_text()
    assert "source .venv/bin/activate" in text
    pyproject = (README.parent / "pyproject.toml").read_text()
    (floor,) = re.findall(r'"(torch>=[0-9.]+)"', pyproject)
    assert floor in text, f"README must state the torch floor of pyproject.toml, {floor}"
    pin = re.search(r"TORCH_PIN := torch==([0-9.]+)", (README.parent / "Makefile").read_text())
    assert pin is not None and pin[1].startswith(floor.removeprefix("torch>=")), (
        "the torch CI runs (Makefile TORCH_PIN) must be the floor pyproject.toml declares"
    )
