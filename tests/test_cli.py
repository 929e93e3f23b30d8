"""The command dispatch shared by every subcommand: errors, warnings, help."""

from __future__ import annotations

import textwrap

from initscope.cli import main


def test_no_command_prints_help_and_returns_2(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_library_warnings_reach_stderr_as_one_line(tmp_path, capsys) -> None:
    model_file = tmp_path / "models.py"
    model_file.write_text(
        textwrap.dedent(
            """
            import torch
            import torch.nn as nn

            class Scaled(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(8, 8)
                    self.gamma = nn.Parameter(torch.ones(8))

                def forward(self, x):
                    return torch.remainder(self.fc(x), self.gamma)  # a use no preset covers

            def make():
                return Scaled()
            """
        )
    )
    assert main(["init", f"{model_file}:make", "--input-shape", "4,8"]) == 0
    err = capsys.readouterr().err
    assert "initscope init: warning:" in err and "gamma" in err
    assert "UserWarning" not in err


def test_user_errors_exit_2_with_the_command_named(capsys) -> None:
    assert main(["gain", "no_such_activation"]) == 2
    assert "initscope gain: error:" in capsys.readouterr().err
