"""``initscope init``: the plan of a model from a factory, as a table or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from initscope.cli import main
from initscope.policy import Plan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "initialize_models.py"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["init", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_for_the_pricing_network(capsys) -> None:
    code, out, err = run(capsys, f"{EXAMPLES}:pricing_network")
    assert code == 0, err
    for text in (
        "preset 'auto' for PricingNetwork",
        "backbone.2.weight",
        "kaiming_normal",
        "Var = 2 / fan_in = 2/128",
        "output layer",
        "128/1",
    ):
        assert text in out


def test_json_save_plan_and_seed(tmp_path, capsys) -> None:
    saved = tmp_path / "plan.json"
    code, out, err = run(
        capsys,
        f"{EXAMPLES}:transformer_encoder",
        "--input-shape",
        "4,8,128",
        "--json",
        "--save-plan",
        str(saved),
        "--preset",
        "gpt2",
        "--seed",
        "1",
    )
    assert code == 0, err and f"wrote {saved}" in err
    d = json.loads(out)
    assert d["preset"] == "gpt2" and d == json.loads(saved.read_text())
    plan = Plan.from_dict(d)
    assert plan["layers.0.linear1.weight"].std == 0.02
    sys.path.insert(0, str(EXAMPLES.parent))
    try:
        import initialize_models as models
    finally:
        sys.path.remove(str(EXAMPLES.parent))
    model = models.transformer_encoder()
    plan.apply(model, torch.Generator().manual_seed(0))
    assert abs(model.layers[3].linear1.weight.std().item() - 0.02) < 0.001


def test_rules_and_zero_init_residual(capsys) -> None:
    code, out, err = run(
        capsys,
        f"{EXAMPLES}:resnet_cnn",
        "--json",
        "--zero-init-residual",
        "--rule",
        "head=orthogonal",
    )
    assert code == 0, err
    entries = {e["path"]: e for e in json.loads(out)["entries"]}
    assert entries["blocks.3.conv2.weight"]["choices"][0]["scheme"] == "zeros"
    assert entries["head.weight"]["choices"][0]["scheme"] == "orthogonal"


def test_errors_exit_2(capsys) -> None:
    code, _, err = run(capsys, f"{EXAMPLES}:transformer_encoder")
    assert code == 2 and "example_input" in err and "--input-shape" in err
    code, _, err = run(capsys, f"{EXAMPLES}:mlp", "--rule", "nonsense")
    assert code == 2 and "GLOB=SCHEME" in err
    code, _, err = run(capsys, f"{EXAMPLES}:mlp", "--rule", "0=kaiming_norml")
    assert code == 2 and "valid names: kaiming_normal" in err
    code, _, err = run(capsys, f"{EXAMPLES}:mlp", "--preset", "lsuv")
    assert code == 2 and "--input-shape" in err
    code, _, err = run(capsys, f"{EXAMPLES}:nothing_here")
    assert code == 2 and "has no attribute 'nothing_here'" in err


def test_diagnose_init_takes_the_presets(capsys) -> None:
    reports = {}
    for preset in ("torch", "auto"):
        code = main(
            ["diagnose", f"{EXAMPLES}:mlp", "--input-shape", "128,256", "--init", preset, "--json"]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        reports[preset] = json.loads(out)
    assert reports["torch"]["verdict"] == "vanishing" and reports["auto"]["verdict"] == "healthy"
