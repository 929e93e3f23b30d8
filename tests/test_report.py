"""Tests for initscope.report: verdict rules, dict/JSON, table, plot, HTML, compare."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from initscope import diagnose
from initscope.report import LayerStats, Report, compare

ROOT = Path(__file__).resolve().parents[1]


def row(i: int, kind: str = "weight", **over) -> dict:
    base = dict(
        index=i,
        path=f"l{i}",
        type="Linear" if kind == "weight" else "ReLU",
        kind=kind,
        fans=None,
        weight_std=0.1,
        in_mean=0.0,
        in_std=1.0,
        out_mean=0.0,
        out_std=1.0,
        grad_out_std=1.0,
        weight_grad_std=0.1,
        dead_fraction=0.0,
        saturated_fraction=None,
        identical_groups=0,
        predicted_std=1.0,
        ratio=1.0,
    )
    base.update(over)
    return base


def judged(rows: list[dict]) -> Report:
    return Report.from_measurements(rows, {"model": "Synthetic"})


def chain(n: int, out=lambda i: 1.0, grad=lambda i: 1.0) -> list[dict]:
    return [row(i, out_std=out(i), grad_out_std=grad(i)) for i in range(n)]


# ----------------------------------------------------------------------------- rules


def test_forward_rule_needs_ten_weight_layers_and_a_factor_four():
    grow = 2.0 ** (2.01 / 9)
    assert judged(chain(10, out=lambda i: grow**i)).verdict == "exploding"
    assert judged(chain(10, out=lambda i: grow**-i)).verdict == "vanishing"
    assert judged(chain(10, out=lambda i: (2.0 ** (1.99 / 9)) ** i)).verdict == "healthy"
    shallow = judged(chain(9, out=lambda i: 10.0**i))
    assert shallow.verdict == "healthy" and "need >= 10" in shallow.reason
    report = judged(chain(10, out=lambda i: grow**-i))
    assert report.forward_log2 == pytest.approx(-2.01)
    assert report.forward_slope == pytest.approx(-2.01 / 9)
    assert [s.verdict for s in report.layers[:9]] == ["healthy"] * 9
    assert report.layers[9].verdict == "vanishing"
    assert report.forward_gains[0] is None and report.forward_gains[1] == pytest.approx(grow**-1)


def test_gradient_rule_uses_the_trend_not_one_step_at_the_head():
    shrink = 2.0 ** (3 / 11)
    assert (
        judged(chain(12, grad=lambda i: shrink**i)).verdict == "vanishing"
    )  # smaller toward the input
    assert judged(chain(12, grad=lambda i: shrink**-i)).verdict == "exploding"
    head = judged(chain(12, grad=lambda i: 8.0 if i == 11 else 1.0))
    assert head.backward_log2 == pytest.approx(-3.0)
    assert head.verdict == "healthy"


def test_precedence_symmetric_then_depth_then_dead_then_saturated():
    rows = chain(10, out=lambda i: 10.0**i)
    rows[3]["identical_groups"] = 2
    assert judged(rows).verdict == "symmetric"
    rows = chain(10, out=lambda i: 10.0**i) + [row(10, "activation", dead_fraction=0.9)]
    assert judged(rows).verdict == "exploding"
    rows = chain(3) + [row(3, "activation", dead_fraction=0.9, saturated_fraction=0.9)]
    assert judged(rows).verdict == "dead"
    rows = chain(3) + [row(3, "activation", dead_fraction=0.5, saturated_fraction=0.51)]
    report = judged(rows)
    assert report.verdict == "saturated" and "51%" in report.reason
    # exactly 50% is not more than half
    assert judged(chain(3) + [row(3, "activation", saturated_fraction=0.5)]).verdict == "healthy"
    # a weight layer's zero outputs (zero-initialized residual branch) do not make it dead
    assert judged(chain(3) + [row(3, dead_fraction=1.0)]).verdict == "healthy"


def test_non_finite_is_exploding_at_any_depth():
    report = judged(chain(2, out=lambda i: math.inf if i else 1.0))
    assert report.verdict == "exploding" and report.forward_log2 == math.inf
    assert judged(chain(2, grad=lambda i: math.nan)).verdict == "exploding"


def test_exact_zeros_are_by_design_left_out_and_never_clamped():
    rows = chain(10, out=lambda i: 0.0 if i == 9 else 1.0)
    rows[9]["weight_std"] = 0.0  # a zero-initialized last layer
    report = judged(rows)
    assert report.forward_log2 == 0.0 and report.verdict == "healthy"
    assert report.layers[9].note.startswith("zero-initialized (by design)")
    assert "zero-initialized: 'l9'" in report.reason
    # the layers behind a zero layer get exactly zero gradient: left out of the backward fit too
    rows = chain(12, grad=lambda i: 0.0 if i < 11 else 1.0)
    report = judged(rows)
    assert math.isnan(report.backward_log2) and report.verdict == "healthy"
    assert "gradient exactly 0" in report.layers[0].note


def test_head_rows_are_reported_not_fitted_and_norms_judge_the_row_before():
    # a head 2**12 smaller than the body: reported on its row, not in the trend
    rows = chain(12) + [row(12, out_std=2.0**-12, grad_out_std=1.0, role="head")]
    report = judged(rows)
    assert report.verdict == "healthy" and report.forward_log2 == 0.0
    assert report.layers[12].note.startswith("head") and report.layers[12].verdict == "healthy"
    assert len(report.body_layers()) == 12 and len(report.weight_layers()) == 13
    # pre-norm rows 8x larger per layer, each renormalized by the norm that reads it
    rows = []
    for i in range(10):
        rows += [
            row(2 * i, out_std=8.0**i),
            row(2 * i + 1, "norm", out_std=1.0, chained=True, type="BatchNorm2d"),
        ]
    report = judged(rows)
    assert report.verdict == "healthy" and report.forward_log2 == 0.0
    assert report.layers[18].judged_at == "l19" and report.layers[18].verdict == "healthy"
    # fewer than 3 usable body rows: n/a
    assert math.isnan(judged(chain(2)).forward_log2)
    assert "n/a" in judged(chain(2)).reason


def test_a_row_without_gradient_says_why():
    rows = chain(12) + [row(12, grad_out_std=None, role="head")]
    report = judged(rows)
    assert "no gradient: its output does not reach the objective" in report.layers[12].note
    assert report.backward_log2 == 0.0 and "no gradient: 'l12'" in report.reason


# ----------------------------------------------------------------------------- dict / JSON


@pytest.fixture(scope="module")
def report() -> Report:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )
    return diagnose(model, input_shape=(64, 16), generator=torch.Generator().manual_seed(0))


def test_to_dict_has_long_form_records(report):
    d = report.to_dict()
    assert d["verdict"] == report.verdict
    assert len(d["layers"]) == len(report.layers) == 5
    records = d["records"]
    assert set(records[0]) == {"index", "path", "type", "kind", "stat", "value"}
    by_key = {(r["index"], r["stat"]): r["value"] for r in records}
    for s in report.layers:
        assert by_key[(s.index, "out_std")] == s.out_std
        assert by_key[(s.index, "identical_groups")] == 0
        if s.fans is not None:
            assert by_key[(s.index, "fan_in")] == s.fans.fan_in
        if s.grad_out_std is not None:
            assert by_key[(s.index, "grad_out_std")] == s.grad_out_std
    # one record per (layer, statistic), no duplicates, no None values
    assert len(by_key) == len(records)
    assert all(r["value"] is not None for r in records)
    assert d["layers"][0]["fans"] == {"fan_in": 16, "fan_out": 32, "receptive_field": 1}


def test_to_json_is_strict_and_written(report, tmp_path):
    text = report.to_json(tmp_path / "r.json")
    assert (tmp_path / "r.json").read_text() == text + "\n"
    assert json.loads(text)["verdict"] == report.verdict
    inf = judged(chain(2, out=lambda i: math.inf if i else 1.0))
    inf.layers[0].in_mean = math.nan
    data = json.loads(
        inf.to_json(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")
    )
    assert data["forward_log2"] == "inf"
    assert data["layers"][1]["out_std"] == "inf"
    assert data["layers"][0]["in_mean"] is None


# ----------------------------------------------------------------------------- views


def test_str_is_a_table_of_every_row(report):
    text = str(report)
    assert f"verdict {report.verdict}" in text
    assert report.reason[:40] in text
    lines = text.splitlines()
    for s in report.layers:
        assert any(
            re.match(rf"\s*{s.index}\s+│\s+{re.escape(s.path)}\s+│\s+{s.type}", line)
            for line in lines
        )
    assert "\x1b[" not in text
    assert repr(report).startswith("Report(verdict=")


def test_rich_renderable(report):
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(report)
    assert "ratio" in console.export_text()


def test_plot_writes_a_png_with_measured_and_predicted(report, tmp_path):
    fig = report.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fwd, bwd = fig.axes
    assert len(fwd.lines) == 2 and len(bwd.lines) == 2
    measured = fwd.lines[0].get_ydata()
    assert list(measured) == pytest.approx([s.out_std for s in report.weight_layers()])
    assert list(bwd.lines[0].get_ydata()) == pytest.approx(
        [s.grad_out_std for s in report.weight_layers()]
    )
    assert fwd.get_yscale() == "log"


def test_plot_into_given_axes(report):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert report.plot(ax=ax) is fig
    assert len(ax.lines) == 4
    fig2 = Figure()
    pair = fig2.subplots(1, 2)
    report.plot(ax=pair)
    assert [len(a.lines) for a in pair] == [2, 2]


def test_plot_into_a_subfigure_saves_its_figure(report, tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subfigures(1, 2)[0].subplots()
    assert report.plot(tmp_path / "s.png", ax=ax) is fig  # a subfigure cannot save
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(ax.lines) == 4


def test_compare_puts_reports_on_one_figure(report, tmp_path):
    other = judged(chain(3, out=lambda i: 2.0**-i))
    fig = compare([report, other], labels=["real", "synthetic"], path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    fwd, _ = fig.axes
    labels = [line.get_label() for line in fwd.lines]
    assert (
        labels[0] == f"real ({report.verdict}): measured"
        and labels[2] == "synthetic (healthy): measured"
    )
    with pytest.raises(ValueError, match="labels"):
        compare([report, other], labels=["one"])
    with pytest.raises(TypeError, match="reports"):
        compare([report, "x"], labels=["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        compare([], labels=[])


def test_html_is_self_contained(report, tmp_path):
    path = report.to_html(tmp_path / "r.html")
    text = path.read_text()
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert match and base64.b64decode(match.group(1))[:4] == b"\x89PNG"
    assert not re.search(r'(src|href)="https?:', text)
    for s in report.layers:
        assert f">{s.path}<" in text
    assert f'class="v-{report.verdict}">{report.verdict}' in text


def test_layerstats_to_dict_roundtrip(report):
    s = report.layers[0]
    assert LayerStats(**{**s.to_dict(), "fans": s.fans}) == s


@pytest.mark.slow
def test_html_renders_in_headless_chromium(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed")
    out = tmp_path / "shot.png"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "render_report.py"),
            "--out-dir",
            str(tmp_path),
            "--screenshot",
            str(out),
        ],
        check=True,
        timeout=300,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000


def test_log2_axes_have_a_minimum_span_and_labelled_ticks(report, tmp_path):
    fig = report.plot(tmp_path / "healthy.png")  # a healthy model: stds within a few percent
    fig.canvas.draw()
    for axis in fig.axes:
        lo, hi = axis.get_ylim()
        assert math.log2(hi / lo) >= 4.0
        shown = [
            t.get_text()
            for t, v in zip(axis.get_yticklabels(), axis.get_yticks(), strict=True)
            if lo <= v <= hi
        ]
        assert len(shown) >= 3 and all(re.fullmatch(r"\$2\^\{-?\d+\}\$", t) for t in shown)


# ----------------------------------------------------------------------------- like layers


def blocks(n: int, per_block: dict[str, tuple[float, float]], **over) -> list[dict]:
    """``n`` repeated blocks ``blocks.<b>.<name>`` whose rows have fixed (out std, grad std)."""
    rows = []
    for b in range(n):
        for name, (out, grad) in per_block.items():
            rows.append(
                row(len(rows), path=f"blocks.{b}.{name}", out_std=out, grad_out_std=grad, **over)
            )
    return rows


def test_trends_compare_like_layers_not_the_pattern_inside_a_block():
    # a transformer-like block: small q/k gradients, a branch end scaled down by design
    pattern = {"qkv": (1.0, 0.01), "proj": (0.1, 1.0), "fc1": (1.0, 0.3), "fc2": (0.2, 1.0)}
    flat = judged(blocks(6, pattern))
    assert flat.verdict == "healthy", flat.reason
    assert flat.forward_log2 == pytest.approx(0.0) and flat.backward_slope == pytest.approx(0.0)
    assert all(s.verdict == "healthy" for s in flat.layers)  # each row against its own group
    # a real trend inside like layers still fires: every like row's gradient doubles per block
    growing = {k: (o, g) for k, (o, g) in pattern.items()}
    rows = blocks(6, growing)
    for r in rows:
        r["grad_out_std"] *= 2.0 ** -(r["index"] // 4)  # smaller toward the output
    report = judged(rows)
    assert report.verdict == "exploding"
    # 1 bit per block of 4 rows: the pooled slope is 1/4 bit per row, over 23 rows
    assert report.backward_slope == pytest.approx(0.25)
    assert report.backward_log2 == pytest.approx(0.25 * 23)


def test_a_stack_without_repeated_blocks_keeps_the_plain_trend():
    rows = chain(10, out=lambda i: 2.0 ** (-0.3 * i))
    rows[0]["path"], rows[1]["path"] = "stem", "body"  # unlike names, the rest l2..l9
    report = judged(rows)
    assert report.forward_log2 == pytest.approx(-0.3 * 9)  # end points, one group
    assert report.forward_slope == pytest.approx(-0.3)


def test_grouped_backward_trend_is_the_gradient_norm_per_example():
    # like layers at 4x fewer positions per stage, per-element gradient 2x larger: same norm
    rows = []
    for stage in range(4):
        for b in range(3):
            for conv in ("conv1", "conv2"):
                rows.append(
                    row(
                        len(rows),
                        path=f"stages.{stage}.{b}.{conv}",
                        type="Conv2d",
                        grad_out_std=2.0**stage,
                        elements=16 * 4 ** (4 - stage),
                    )
                )
    report = judged(rows)
    assert report.backward_slope == pytest.approx(0.0) and report.verdict == "healthy"
    for r in rows:
        r["elements"] = None  # per element: the gradient grows 1 bit per stage toward the output
    assert judged(rows).verdict == "vanishing"


def test_gates_are_reported_not_fitted():
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
            return x * s

    model = nn.Sequential(SE(), SE(), SE())
    report = diagnose(model, input_shape=(4, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    roles = {s.path: s.role for s in report.weight_layers()}
    assert roles["0.fc1"] == roles["2.fc2"] == "gate" and roles["1.conv"] == "body"
    assert "gate on a pooled map" in report.layers[1].note + report.layers[2].note
    assert "gate: " in report.reason


def test_two_values_per_unit_after_batch_norm_are_not_symmetry():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(16, 16, 1), nn.Conv2d(16, 16, 1)
            self.bn_a, self.bn_b = nn.BatchNorm2d(16), nn.BatchNorm2d(16)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.bn_a(self.a(x)) + self.bn_b(self.b(x)))  # +-1 +- 1, then ReLU

    gen = torch.Generator().manual_seed(0)
    two = diagnose(Block(), input_shape=(2, 16, 1, 1), generator=gen)
    assert two.verdict != "symmetric"
    assert all(s.identical_groups == 0 for s in two.layers)
    # constant weights are still caught, on the weight rows, at any batch size
    copies = Block()
    nn.init.constant_(copies.a.weight, 0.1)
    assert diagnose(copies, input_shape=(2, 16, 1, 1), generator=gen).verdict == "symmetric"
