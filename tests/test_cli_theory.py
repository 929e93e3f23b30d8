"""``initscope gain`` and ``initscope guide``."""

import json
import math
import subprocess
import sys

import pytest

from initscope import theory
from initscope.cli import main


def test_gain_table_shows_moments_gains_and_torch(capsys):
    assert main(["gain", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "tanh" in out and "E[f(z)^2]" in out and "E[f'(z)^2]" in out
    assert f"{theory.gain('tanh'):.10g}" in out  # exact 1.592537420
    assert "1.666666667" in out  # torch's 5/3, side by side
    assert "xavier_normal" in out


def test_gain_for_an_activation_torch_lacks(capsys):
    assert main(["gain", "gelu"]) == 0
    out = capsys.readouterr().out
    assert f"{theory.gain('gelu'):.10g}" in out and "not in its table" in out


def test_gain_json_with_param_and_q(capsys):
    assert main(["gain", "leaky_relu", "--param", "0.2", "--q", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["activation"] == "leaky_relu(0.2)" and data["q"] == 4.0
    assert data["moments"]["second"] == pytest.approx(1.04 * 4 / 2, rel=1e-14)
    assert data["c_forward"] == pytest.approx(0.52, rel=1e-14)
    assert data["gain"]["forward"] == pytest.approx(math.sqrt(2 / 1.04), rel=1e-14)
    assert data["torch_gain"] == pytest.approx(math.sqrt(2 / 1.04), rel=1e-14)
    assert data["recommendation"]["scheme"] == "kaiming_normal"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gain", "relux"], "did you mean 'relu'"),
        (["gain", "relu", "--q", "0"], "q: expected a number > 0"),
        (["gain", "relu", "--param", "0.3"], "takes no parameter"),
        (["gain", "softplus", "--param", "-1"], "must be > 0"),
    ],
)
def test_gain_bad_input_exits_2_with_a_message(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_guide_table(capsys):
    assert main(["guide"]) == 0
    out = capsys.readouterr().out
    for label in (
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(0.01)",
        "leaky_relu(0.2)",
        "selu",
        "gelu",
        "silu",
        "mish",
        "elu(1)",
        "softplus(1)",
    ):
        assert label in out
    assert "lecun_normal" in out and "-22.0 / -21.5" in out  # GELU under He over 50 layers


def test_guide_json_matches_the_library(capsys):
    assert main(["guide", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [entry.to_dict() for entry in theory.guide()]


def test_python_m_initscope_gain_gelu():
    done = subprocess.run(
        [sys.executable, "-m", "initscope", "gain", "gelu", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gain"]["forward"] == pytest.approx(
        theory.gain("gelu"), rel=1e-15
    )


@pytest.mark.parametrize("text", ["64,x", "64,,784", "64,-1", "a,b", ""])
def test_parse_shape_rejects_malformed_shapes(text: str) -> None:
    from initscope.cli._common import CLIError, parse_shape

    with pytest.raises(CLIError, match="--input-shape"):
        parse_shape(text)


def test_parse_shape_accepts_commas_and_x() -> None:
    from initscope.cli._common import parse_shape

    assert parse_shape("64,784") == parse_shape("64x784") == (64, 784)
