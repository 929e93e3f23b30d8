"""Tests for ``initscope diagnose`` (the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from initscope.cli import main

ROOT = Path(__file__).resolve().parents[1]

MODELS = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    def make(depth=12, width=64):
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers)

    def empty():
        return nn.Sequential(nn.ReLU())

    def tokens():
        return nn.Sequential(nn.Embedding(30, 16), nn.Linear(16, 30))

    class Conv1D(nn.Module):  # Hugging Face's layout: weight (in, out), x @ W + b
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_in, n_out))
            self.bias = nn.Parameter(torch.randn(n_out))

        def forward(self, x):
            return x @ self.weight + self.bias

    def hf_style():
        return nn.Sequential(Conv1D(8, 8), nn.Tanh(), Conv1D(8, 8))

    def norm_only():
        return nn.Sequential(nn.LayerNorm(8), nn.Tanh())
    """
)


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    path = tmp_path / "diag_models.py"
    path.write_text(MODELS)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["diagnose", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_for_a_file_factory(models, capsys):
    code, out, err = run(capsys, f"{models}:make", "--input-shape", "32,64")
    assert code == 0, err
    assert "verdict vanishing" in out
    assert "0     │ Linear" in out.replace("  │", "  │")
    assert out.count("│ Linear ") == 12 and out.count("│ ReLU ") == 12


def test_json_is_reproducible_with_a_seed(models, capsys):
    code, first, _ = run(
        capsys, f"{models}:make", "--input-shape", "16,64", "--json", "--seed", "3"
    )
    assert code == 0
    code, second, _ = run(
        capsys, f"{models}:make", "--input-shape", "16,64", "--json", "--seed", "3"
    )
    assert first == second
    data = json.loads(first)
    assert data["verdict"] == "vanishing"
    assert data["meta"]["input"] == "synthetic (16, 64)"
    assert len(data["layers"]) == 24


def test_module_factory_and_token_inputs(models, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(models.parent))
    code, out, err = run(capsys, "diag_models:tokens", "--input-shape", "4,9", "--json")
    assert code == 0, err
    layers = json.loads(out)["layers"]
    assert [row["kind"] for row in layers] == ["embedding", "weight"]


def test_html_and_plot_files(models, capsys, tmp_path):
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    code, _, err = run(
        capsys, f"{models}:make", "--input-shape", "16,64", "--html", str(html), "--plot", str(png)
    )
    assert code == 0
    assert "data:image/png;base64," in html.read_text()
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f"wrote {html}" in err and f"wrote {png}" in err


def test_init_scheme_then_diagnose(models, capsys):
    pytest.importorskip("initscope.init")
    code, out, err = run(
        capsys, f"{models}:make", "--input-shape", "64,64", "--init", "kaiming_normal", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["verdict"] == "healthy"
    code, out, err = run(
        capsys,
        f"{models}:make",
        "--input-shape",
        "16,64",
        "--init",
        "constant",
        "--init-arg",
        "val=0.5",
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["verdict"] == "symmetric"
    assert all(row["weight_std"] == 0 for row in data["layers"] if row["kind"] == "weight")


def test_init_policy_preset_then_diagnose(models, capsys):
    policy = pytest.importorskip("initscope.policy")
    assert "auto" in policy.PRESETS
    code, out, err = run(
        capsys, f"{models}:make", "--input-shape", "64,64", "--init", "auto", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["verdict"] == "healthy"
    code, _, err = run(capsys, f"{models}:make", "--input-shape", "8,64", "--init", "auto",
                       "--init-arg", "val=1")  # fmt: skip
    assert code == 2 and "takes no arguments" in err


def test_init_scheme_draws_the_layers_the_graph_calls_linear(models, capsys):
    code, out, err = run(
        capsys, f"{models}:hf_style", "--input-shape", "4,8", "--init", "constant",
        "--init-arg", "val=0.5", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = [row for row in json.loads(out)["layers"] if row["kind"] == "weight"]
    assert len(rows) == 2
    assert all(row["weight_std"] == 0 for row in rows)  # drawn, not left random
    code, out, err = run(
        capsys, f"{models}:norm_only", "--input-shape", "4,8", "--init", "kaiming_normal"
    )
    assert code == 2 and out == ""
    assert "--init kaiming_normal: the model has no Linear, Conv* or ConvTranspose* layer" in err


def test_unknown_init_lists_valid_names(models, capsys):
    pytest.importorskip("initscope.init")
    code, _, err = run(
        capsys, f"{models}:make", "--input-shape", "16,64", "--init", "kaiming_normall"
    )
    assert code == 2
    assert "--init" in err and "kaiming_normal" in err and "xavier_uniform" in err
    if "policy presets" in err:
        assert "auto" in err


@pytest.mark.parametrize(
    ("spec", "shape", "extra", "message"),
    [
        ("missing.py:make", "16,64", [], "file not found"),
        ("{models}:nope", "16,64", [], "has no attribute 'nope'"),
        ("{models}:empty", "16,64", [], "no parameters"),
        ("{models}:make", "16,100", [], r"in_features=64"),
        ("{models}:make", "16,abc", [], "--input-shape"),
        ("{models}:make", "16,64", ["--init-arg", "val=1"], "--init-arg: given without --init"),
        ("{models}:make", "16,64", ["--init", "normal", "--init-arg", "oops"], "KEY=VALUE"),
    ],
)
def test_user_errors_exit_2(models, capsys, spec, shape, extra, message):
    code, out, err = run(capsys, spec.format(models=models), "--input-shape", shape, *extra)
    assert code == 2
    assert out == ""
    assert message in err


def test_console_entry_point_exit_code(models):
    done = subprocess.run(
        [sys.executable, "-m", "initscope", "diagnose", f"{models}:nope", "--input-shape", "2,64"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "has no attribute 'nope'" in done.stderr


def test_example_factory_from_the_docs(capsys):
    code, out, err = run(
        capsys,
        f"{ROOT / 'examples' / 'diagnose_mlp.py'}:make_mlp",
        "--input-shape",
        "64,256",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["verdict"] == "vanishing"
