"""User errors on the command line end in one message on stderr and exit code 2, before any work
(issue 11, item 4): the factory file, the factory, the forward, output paths, --input-shape and
--init-arg."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from initscope.cli import main
from initscope.cli._common import CLIError, check_batch

MODELS = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    def make():
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def broken():
        raise RuntimeError("the factory broke")

    class Raises(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, x):
            raise RuntimeError("the forward broke")

    def raises():
        return Raises()
    """
)


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    path = tmp_path / "cli_models.py"
    path.write_text(MODELS)
    return path


def one_error(capsys, argv: list[str], *words: str) -> str:
    """Run the command; it must exit 2 with one error line naming ``words`` and print nothing."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"initscope {argv[0]}: error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["init", "diagnose"])
@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def make(:\n    pass\n", ("SyntaxError", "bad_file.py, line 1")),
        ("import no_such_module_for_initscope\n", ("ModuleNotFoundError", "bad_file.py:1")),
        ("x = 1\nraise KeyError('at import')\n", ("KeyError", "at import", "bad_file.py:2")),
    ],
    ids=["syntax", "import", "raises"],
)
def test_a_factory_file_that_does_not_import(tmp_path, capsys, command, source, words) -> None:
    path = tmp_path / "bad_file.py"
    path.write_text(source)
    line = one_error(capsys, [command, f"{path}:make", "--input-shape", "4,16"], *words)
    assert f"importing {path} failed" in line
    # the half-imported module is not left behind in sys.modules
    assert not any(getattr(m, "__file__", None) == str(path) for m in list(sys.modules.values()))


@pytest.mark.parametrize("command", ["init", "diagnose"])
def test_a_factory_that_raises(models, capsys, command) -> None:
    line = one_error(
        capsys,
        [command, f"{models}:broken", "--input-shape", "4,16"],
        "RuntimeError: the factory broke",
    )
    assert f"{models}:" in line  # where: the user's file and line


@pytest.mark.parametrize("command", ["init", "diagnose"])
def test_a_forward_that_raises(models, capsys, command) -> None:
    one_error(
        capsys,
        [command, f"{models}:raises", "--input-shape", "4,16"],
        "RuntimeError: the forward broke",
        "(4, 16)",
        f"{models}:",
    )


def test_init_checks_the_input_shape_against_the_model(models, capsys) -> None:
    # The model is traceable, so the plan alone never runs the batch: it was silently ignored.
    one_error(
        capsys,
        ["init", f"{models}:make", "--preset", "lsuv", "--input-shape", "8,10"],
        "--input-shape 8,10",
        "(8, 10)",
    )
    assert main(["init", f"{models}:make", "--preset", "lsuv", "--input-shape", "8,16"]) == 0


@pytest.mark.parametrize(
    ("command", "option", "name"),
    [
        ("init", "--save-plan", "plan.json"),
        ("diagnose", "--html", "report.html"),
        ("diagnose", "--plot", "plot.png"),
    ],
)
def test_outputs_are_checked_before_the_work(models, tmp_path, capsys, command, option, name):
    shape = ["--input-shape", "4,16"]
    missing = tmp_path / "missing" / name
    one_error(capsys, [command, f"{models}:make", *shape, option, str(missing)], option, "missing")
    one_error(capsys, [command, f"{models}:make", *shape, option, str(tmp_path)], option, "folder")
    assert not missing.parent.exists()
    # and a good path is written
    assert main([command, f"{models}:make", *shape, option, str(tmp_path / name)]) == 0
    assert (tmp_path / name).stat().st_size > 0


def test_plot_needs_a_format_matplotlib_writes(models, tmp_path, capsys) -> None:
    for bad in ("plot", "plot.txt"):
        one_error(
            capsys,
            ["diagnose", f"{models}:make", "--input-shape", "4,16", "--plot", str(tmp_path / bad)],
            "--plot",
            ".png",
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "cli_models.py"]


@pytest.mark.parametrize(
    ("init_args", "words"),
    [
        (["--init-arg", "val=abc"], ("val=abc", "a number")),
        ([], ("--init-arg val=VALUE",)),
        (["--init-arg", "val=1", "--init-arg", "std=2"], ("std", "takes val")),
        (["--init-arg", "val=1", "--init-arg", "generator=3"], ("generator", "takes val")),
    ],
    ids=["not-a-number", "missing", "unknown", "object"],
)
def test_init_args_are_checked_against_the_scheme(models, capsys, init_args, words) -> None:
    argv = ["diagnose", f"{models}:make", "--input-shape", "4,16", "--init", "constant"]
    line = one_error(capsys, argv + init_args, *words)
    assert "overload" not in line and "didn't match" not in line


def test_init_args_are_converted_for_the_scheme(models, capsys) -> None:
    argv = ["diagnose", f"{models}:make", "--input-shape", "4,16", "--json"]
    assert main([*argv, "--init", "constant", "--init-arg", "val=1"]) == 0
    assert main([*argv, "--init", "dirac", "--init-arg", "groups=1.5"]) == 2
    assert "groups=1.5" in capsys.readouterr().err
    assert main([*argv, "--init", "kaiming_normal", "--init-arg", "nonlinearity=relu"]) == 0


def test_check_batch_changes_nothing(state) -> None:
    """Running statistics, Dropout's draws from torch's global RNG: all put back."""
    record, check = state
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    good, bad = torch.randn(5, 6), torch.randn(5, 7)
    before = record(model)
    check_batch(model, good, "--input-shape 5,6")
    check(model, before)
    with pytest.raises(CLIError, match=r"--input-shape 5,7: the model cannot run .*\(5, 7\)"):
        check_batch(model, bad, "--input-shape 5,7")
    check(model, before)
    model(good)  # what check_batch undoes: a real pass changes both
    with pytest.raises(AssertionError):
        check(model, before)
