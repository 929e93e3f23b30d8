"""Tests for initscope.diagnose: verdicts, statistics, predictions, state restoration, models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import gen, mlp

from initscope import diagnose, theory
from initscope.report import Report


def he_init(model: nn.Module, seed: int = 1) -> nn.Module:
    g = gen(seed)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, generator=g)
            nn.init.zeros_(m.bias)
    return model


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "grads": [
            (p, p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()
        ],
        "flags": [p.requires_grad for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "objects": [id(t) for t in model.state_dict(keep_vars=True).values()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = model.state_dict(keep_vars=True)
    assert list(after) == list(before["state"])
    for k, v in after.items():
        assert v.dtype == before["state"][k].dtype
        assert torch.equal(v.detach(), before["state"][k]), k
    assert [id(t) for t in after.values()] == before["objects"]
    for p, (q, grad, value) in zip(model.parameters(), before["grads"], strict=True):
        assert p is q
        assert p.grad is grad
        if value is not None:
            assert torch.equal(p.grad, value)
    assert [p.requires_grad for p in model.parameters()] == before["flags"]
    assert [m.training for m in model.modules()] == before["modes"]
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


# ----------------------------------------------------------------------------- acceptance


def test_default_init_relu_mlp_is_vanishing():
    report = diagnose(mlp(30, 256), input_shape=(64, 256), generator=gen())
    assert report.verdict == "vanishing"
    assert len(report.weight_layers()) == 30
    assert report.forward_log2 < -2
    # Var(W) = 1/(3 fan_in) times ReLU's 1/2: the gradient shrinks ~sqrt(6) per layer
    assert report.backward_log2 < -30
    assert report.backward_slope == pytest.approx(-0.5 * math.log2(6), abs=0.15)


def test_kaiming_relu_mlp_is_healthy():
    report = diagnose(he_init(mlp(30, 256)), input_shape=(64, 256), generator=gen())
    assert report.verdict == "healthy", report.reason
    assert abs(report.forward_log2) < 1 and abs(report.backward_log2) < 1
    assert all(s.verdict == "healthy" for s in report.layers)


@pytest.mark.parametrize("zero_bias", [False, True])
def test_constant_init_is_symmetric(zero_bias):
    model = mlp(20, 64)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)
            if zero_bias:
                nn.init.zeros_(m.bias)
    report = diagnose(model, input_shape=(32, 64), generator=gen())
    assert report.verdict == "symmetric"
    # every weight layer: all 64 rows identical -> one group
    assert [s.identical_groups for s in report.weight_layers()] == [1] * 20


# ----------------------------------------------------------------------------- statistics


def test_statistics_match_a_manual_pass():
    model = mlp(3, 16, act=nn.Tanh, d_in=8)
    x = torch.randn(32, 8, generator=gen(5))
    report = diagnose(model, x, generator=gen(7))
    g = torch.randn(32, 16, generator=gen(7))
    h = x
    outs, weights = [], []
    for m in model:
        h = m(h)
        h.retain_grad()
        outs.append(h)
        if isinstance(m, nn.Linear):
            weights.append(m.weight)
    grads = torch.autograd.grad((h * g).sum(), outs + weights)
    rows = report.layers
    assert [r.path for r in rows] == [str(i) for i in range(6)]
    assert [r.kind for r in rows] == ["weight", "activation"] * 3
    inputs = [x] + outs[:-1]
    for r, xin, y, gy in zip(rows, inputs, outs, grads[: len(outs)], strict=True):
        assert r.in_mean == pytest.approx(xin.mean().item(), rel=1e-5, abs=1e-7)
        assert r.in_std == pytest.approx(xin.std(correction=0).item(), rel=1e-5)
        assert r.out_mean == pytest.approx(y.mean().item(), rel=1e-5, abs=1e-7)
        assert r.out_std == pytest.approx(y.std(correction=0).item(), rel=1e-5)
        assert r.grad_out_std == pytest.approx(gy.std(correction=0).item(), rel=1e-5)
    for r, w, gw in zip(report.weight_layers(), weights, grads[len(outs) :], strict=True):
        assert r.weight_std == pytest.approx(w.std(correction=0).item(), rel=1e-5)
        assert r.weight_grad_std == pytest.approx(gw.std(correction=0).item(), rel=1e-5)
        assert (r.fans.fan_in, r.fans.fan_out) == (w.shape[1], w.shape[0])


def test_predictions_follow_the_formulas_and_match_wide_layers():
    model = he_init(mlp(4, 512, d_in=64))
    report = diagnose(model, input_shape=(256, 64), generator=gen(3))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for r, m in zip(report.weight_layers(), linears, strict=True):
        var_b = m.bias.detach().var(correction=0).item()
        expected = math.sqrt(r.fans.fan_in * r.weight_std**2 * (r.in_mean**2 + r.in_std**2) + var_b)
        assert r.predicted_std == pytest.approx(expected, rel=1e-12)
        assert r.ratio == pytest.approx(r.out_std / r.predicted_std, rel=1e-12)
        assert 0.9 < r.ratio < 1.1
    for r in (s for s in report.layers if s.kind == "activation"):
        m = theory.moments("relu", q=r.in_std**2, mean=r.in_mean)
        assert r.predicted_std == pytest.approx(math.sqrt(m.variance), rel=1e-12)
        assert 0.9 < r.ratio < 1.1
    # backward: grad[l] = grad[l+1] * sqrt(fan_out * Var(W) * E[relu'(z)^2]); none for the last
    w = report.weight_layers()
    assert [r.predicted_grad_std is None for r in w] == [False, False, False, True]
    for r in w[:-1]:
        assert 0.85 < r.grad_ratio < 1.15


def test_dead_fraction_is_exact():
    lin = nn.Linear(8, 10)
    with torch.no_grad():
        lin.weight[:3] = 0.0
        lin.bias[:3] = 0.0
        lin.bias[3:5] = -1e3  # pre-activation always negative: dead after ReLU, not zero before
    model = nn.Sequential(lin, nn.ReLU())
    report = diagnose(model, input_shape=(64, 8), generator=gen())
    linear, relu = report.layers
    assert linear.dead_fraction == pytest.approx(3 / 10)
    assert relu.dead_fraction == pytest.approx(5 / 10)
    assert relu.verdict == "healthy"
    with torch.no_grad():
        lin.bias[5:8] = -1e3
    report = diagnose(model, input_shape=(64, 8), generator=gen())
    assert report.layers[1].dead_fraction == pytest.approx(8 / 10)
    assert report.layers[1].verdict == "dead" and report.verdict == "dead"
    # the all-zero rows of the Linear are not a symmetric group
    assert report.layers[0].identical_groups == 0


def test_saturated_fraction_uses_one_percent_of_the_range():
    lin = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(10))
    x = 0.1 * torch.rand(20, 10, generator=gen(1))  # distinct units, far from the bounds
    x[:6] = 5.0  # tanh(5) = 0.99991 >= 1 - 0.02
    x[6:8] = -2.0  # tanh(-2) = -0.964 > -0.98: not saturated
    report = diagnose(nn.Sequential(lin, nn.Tanh()), x, generator=gen())
    assert report.layers[1].saturated_fraction == pytest.approx(6 / 20)
    assert report.layers[1].verdict == "healthy"
    x[:12] = 5.0
    report = diagnose(nn.Sequential(lin, nn.Tanh()), x, generator=gen())
    assert report.layers[1].saturated_fraction == pytest.approx(12 / 20)
    assert report.verdict == "saturated"


def test_relu6_lower_bound_is_not_saturation():
    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
    x = torch.tensor([[-1.0, -2.0, 7.0, 1.0]] * 8)
    x[0, 3] = 2.0
    report = diagnose(nn.Sequential(lin, nn.ReLU6()), x, generator=gen())
    relu6 = report.layers[1]
    assert relu6.saturated_fraction == pytest.approx(8 / 32)  # only the 7.0s: >= 6 - 0.06
    assert relu6.dead_fraction == pytest.approx(2 / 4)


def test_identical_units_by_weight_rows_and_by_outputs():
    lin = nn.Linear(6, 5)
    with torch.no_grad():
        lin.weight[1] = lin.weight[0]
        lin.bias[1] = lin.bias[0]
        lin.weight[3] = lin.weight[2]  # same row, different bias: same group of weight rows
    report = diagnose(nn.Sequential(lin, nn.Tanh()), input_shape=(16, 6), generator=gen())
    linear, tanh = report.layers
    assert linear.identical_groups == 2
    assert tanh.identical_groups == 0  # its input comes straight from the Linear, checked there
    assert report.verdict == "symmetric" and linear.verdict == "symmetric"

    class Custom(nn.Module):  # a layer the hooks do not know: the activation's outputs are checked
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(lin.weight.detach().clone())
            self.b = nn.Parameter(lin.bias.detach().clone())
            self.act = nn.Tanh()

        def forward(self, x):
            return self.act(x @ self.w.T + self.b)

    report = diagnose(Custom(), input_shape=(16, 6), generator=gen())
    (tanh,) = report.layers
    assert tanh.identical_groups == 1  # only units 0 and 1 have identical outputs
    assert report.verdict == "symmetric"
    with torch.no_grad():
        lin.bias[1] += 1.0
    assert diagnose(Custom(), input_shape=(16, 6), generator=gen()).layers[0].identical_groups == 0


# ----------------------------------------------------------------------------- model left as it was


class Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def bn_model(raise_at_end: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5)]
    if raise_at_end:
        layers.append(Raises())
    model = nn.Sequential(*layers)
    model[4].weight.requires_grad_(False)  # a frozen layer
    model[0].weight.grad = torch.randn_like(model[0].weight)  # a stale gradient
    model[2].eval()  # mixed modes
    return model


@pytest.mark.parametrize("raise_at_end", [False, True])
def test_model_is_left_exactly_as_it_was(raise_at_end):
    model = bn_model(raise_at_end)
    with torch.no_grad():  # running stats that a train-mode forward would change
        model[1].running_mean.fill_(0.3)
        model[1].num_batches_tracked.fill_(7)
    before = snapshot(model)
    if raise_at_end:
        with pytest.raises(RuntimeError, match="boom"):
            diagnose(model, input_shape=(8, 3, 6, 6), generator=gen())
    else:
        report = diagnose(model, input_shape=(8, 3, 6, 6), generator=gen())
        assert report.meta["mode"] == "train"
        # the frozen Linear still got a gradient during the pass
        assert report.layers[-1].weight_grad_std > 0
    assert_unchanged(model, before)


def test_eval_mode_pass_uses_running_statistics_and_restores():
    model = bn_model().eval()
    before = snapshot(model)
    report = diagnose(model, input_shape=(8, 3, 6, 6), generator=gen())
    bn = report.layers[1]
    # running stats (0, 1): the BatchNorm output is its input up to eps
    assert bn.out_std == pytest.approx(bn.in_std / math.sqrt(1 + 1e-5), rel=1e-5)
    assert report.meta["mode"] == "eval"
    assert_unchanged(model, before)


def test_wrong_input_shape_names_the_expected_shape_and_changes_nothing():
    model = mlp(2, 16, d_in=784)
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"first layer '0' \(Linear\) expects .*\(\*, 784\).*in_features=784.*\(4, 100\)",
    ):
        diagnose(model, input_shape=(4, 100))
    assert_unchanged(model, before)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) \(in_channels=3\)"):
        diagnose(cnn, torch.randn(2, 1, 8, 8))
    inner = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(30, 2))
    with pytest.raises(
        ValueError,
        match=r"layer '2' \(Linear\) expects .*in_features=30.*model input had shape \(4, 10\)",
    ):
        diagnose(inner, input_shape=(4, 10))


def test_errors_that_are_not_shape_errors_propagate_unchanged():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x).sum(dim=5)

    with pytest.raises(IndexError):
        diagnose(Bad(), input_shape=(2, 4))


def test_no_host_sync_per_layer(monkeypatch):
    model = mlp(12, 32)
    calls = {"item": 0, "tolist": 0, "bool": 0, "float": 0}
    for name, attr in (
        ("item", "item"),
        ("tolist", "tolist"),
        ("bool", "__bool__"),
        ("float", "__float__"),
    ):
        original = getattr(torch.Tensor, attr)

        def counted(self, *a, _orig=original, _name=name, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, attr, counted)
    diagnose(model, input_shape=(16, 32), generator=gen())
    assert calls == {"item": 0, "tolist": 1, "bool": 0, "float": 0}


# ------------------------------------------------------------------- inputs and objectives


def test_same_generator_same_report_and_loss_fn_path():
    model = mlp(3, 8)
    a = diagnose(model, input_shape=(16, 8), generator=gen(4)).to_dict()
    b = diagnose(model, input_shape=(16, 8), generator=gen(4)).to_dict()
    assert a == b
    head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(32, 8, generator=gen(1))
    y = torch.randint(0, 3, (32,), generator=gen(2))
    report = diagnose(head, x, loss_fn=F.cross_entropy, target=y)
    logits = head(x)
    logits.retain_grad()
    F.cross_entropy(logits, y).backward()
    assert report.layers[-1].grad_out_std == pytest.approx(
        logits.grad.std(correction=0).item(), rel=1e-5
    )
    assert report.meta["backward"] == "loss_fn"
    for p in head.parameters():
        p.grad = None


def test_tuple_and_dict_inputs():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(5, 6)

        def forward(self, x, z):
            return torch.tanh(self.a(x) + self.b(z))

    x, z = torch.randn(8, 4, generator=gen(1)), torch.randn(8, 5, generator=gen(2))
    by_tuple = diagnose(Two(), (x, z), generator=gen())
    assert [r.path for r in by_tuple.layers] == ["a", "b"]
    torch.manual_seed(0)
    m = Two()
    assert (
        diagnose(m, {"x": x, "z": z}, generator=gen()).to_json()
        == diagnose(m, (x, z), generator=gen()).to_json()
    )


def test_embedding_first_gets_integer_tokens():
    model = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 50))
    report = diagnose(model, input_shape=(4, 12), generator=gen())
    emb = report.layers[0]
    assert emb.kind == "embedding" and math.isnan(emb.in_mean)
    assert emb.predicted_std == emb.weight_std
    assert emb.ratio == pytest.approx(1.0, abs=0.15)
    assert report.meta["input"] == "synthetic (4, 12)"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_shape": (2, 4), "model": "nope"}, TypeError, "model"),
        ({}, ValueError, "exactly one"),
        ({"inputs": torch.zeros(2, 4), "input_shape": (2, 4)}, ValueError, "exactly one"),
        ({"inputs": [1, 2]}, TypeError, "inputs"),
        ({"input_shape": (2, 0)}, ValueError, "input_shape"),
        ({"input_shape": "2,4"}, TypeError, "input_shape"),
        ({"input_shape": (2, 4), "target": torch.zeros(2)}, ValueError, "target"),
        ({"input_shape": (2, 4), "loss_fn": 3}, TypeError, "loss_fn"),
        ({"input_shape": (2, 4), "generator": 0}, TypeError, "generator"),
        ({"input_shape": (2, 4), "loss_fn": lambda out: out}, ValueError, "scalar"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    model = kwargs.pop("model", nn.Linear(4, 3))
    with pytest.raises(error, match=match):
        diagnose(model, **kwargs)


def test_model_without_parameters_is_rejected():
    with pytest.raises(ValueError, match="no parameters"):
        diagnose(nn.ReLU(), input_shape=(2, 4))


# ----------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(("act", "name"), [(nn.Tanh, "tanh"), (nn.GELU, "gelu"), (nn.ReLU, "relu")])
def test_deep_mlps_predictions_track_measurement(act, name):
    model = mlp(12, 128, act=act)
    report = diagnose(model, input_shape=(128, 128), generator=gen())
    acts = [r for r in report.layers if r.kind == "activation"]
    assert len(acts) == 12 and {r.type for r in acts} == {act.__name__}
    for r in report.layers:
        if r.predicted_std:
            assert 0.8 < r.ratio < 1.25, (r.path, r.ratio)


def test_cnn_with_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    before = snapshot(model)
    report = diagnose(model, input_shape=(16, 3, 12, 12), generator=gen())
    assert [r.kind for r in report.layers] == ["weight", "norm", "activation"] * 2 + ["weight"]
    for bn in (r for r in report.layers if r.kind == "norm"):
        assert bn.out_std == pytest.approx(1.0, abs=1e-3)  # batch statistics in train mode
    assert report.layers[0].fans.fan_in == 27
    assert 0.85 < report.layers[0].ratio < 1.05  # zero padding trims the borders a little
    assert_unchanged(model, before)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def test_resnet_style_residual_adds():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        Block(8),
        Block(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    report = diagnose(model, input_shape=(8, 3, 8, 8), generator=gen())
    paths = [r.path for r in report.layers]
    assert paths[:7] == ["0", "1.conv1", "1.bn1", "1.relu", "1.conv2", "1.bn2", "1.relu#2"]
    # the second ReLU sees bn2's output plus the skip: its input differs from bn2's output
    bn2, relu2 = report.layers[5], report.layers[6]
    assert relu2.in_std > bn2.out_std
    # the in-place ReLU's input statistics are taken before it runs
    assert report.layers[3].in_mean == pytest.approx(0.0, abs=1e-5)
    assert all(r.grad_out_std is not None and r.grad_out_std > 0 for r in report.layers)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformer_encoder(mode):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).train(mode == "train")
    before = snapshot(model)
    report = diagnose(model, input_shape=(4, 10, 32), generator=gen())
    kinds = [r.kind for r in report.layers]
    assert kinds == ["attention", "norm", "weight", "weight", "norm"] * 2  # hooks see the slow path
    attn = report.layers[0]
    assert attn.fans.fan_in == 32 and attn.out_std > 0 and attn.grad_out_std > 0
    assert report.layers[2].path == "layers.0.linear1"
    # F.relu between linear1 and linear2 has no row: linear2's input statistics stand in
    assert report.layers[3].in_mean > 0
    assert report.layers[2].predicted_grad_std is None
    assert_unchanged(model, before)


def test_lstm_measures_the_output_sequence():
    torch.manual_seed(0)
    model = nn.LSTM(12, 20, num_layers=2, batch_first=True)
    x = torch.randn(4, 7, 12, generator=gen(1))
    report = diagnose(model, x, generator=gen())
    (row,) = report.layers
    out, _ = model(x)
    assert row.kind == "recurrent" and row.fans.fan_in == 12
    assert row.out_std == pytest.approx(out.std(correction=0).item(), rel=1e-5)
    assert row.grad_out_std == pytest.approx(1.0, abs=0.1)  # g ~ N(0, 1)


def test_functional_activation_has_no_row_and_next_input_stands_in():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(10, 64), nn.Linear(64, 5)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    model = Functional()
    x = torch.randn(64, 10, generator=gen(1))
    report = diagnose(model, x, generator=gen())
    a, b = report.layers
    h = F.relu(model.a(x))
    assert b.in_std == pytest.approx(h.std(correction=0).item(), rel=1e-5)
    assert b.in_mean == pytest.approx(h.mean().item(), rel=1e-5)
    assert a.predicted_grad_std is None  # the chain a -> b is broken by the unseen F.relu


def test_report_is_a_report():
    report = diagnose(nn.Linear(4, 3), input_shape=(5, 4), generator=gen())
    assert isinstance(report, Report)
    assert report.layers[0].path == "Linear"
    # one weight layer has no depth: the trend is n/a, never "+0.00"
    assert math.isnan(report.forward_log2) and math.isnan(report.backward_log2)
    assert "forward log2 n/a" in report.reason and "+0.00" not in str(report)


def test_linear_cka_known_values() -> None:
    from initscope.diagnostics import linear_cka

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, 2.5 * x @ q) == pytest.approx(1.0, abs=1e-12)  # orthogonal + scale
    # independent features: CKA ~ p q / n-ish, small
    assert linear_cka(x, torch.randn(2000, 16, generator=g)) < 0.02
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, torch.ones(2000, 3))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:10])


# ----------------------------------------------------------------------------- judging the body


def he_stack(n: int, width: int = 64) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for _ in range(n):
        lin = nn.Linear(width, width)
        nn.init.kaiming_normal_(lin.weight, generator=gen(len(layers)))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
    return layers


def test_zero_head_is_by_design_not_126_bits_of_vanishing():
    head = nn.Linear(64, 10)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    report = diagnose(nn.Sequential(*he_stack(12), head), input_shape=(64, 64), generator=gen())
    assert report.verdict == "healthy", report.reason
    row = report.weight_layers()[-1]
    assert row.role == "head" and "zero-initialized (by design)" in row.note
    # behind a zero head every gradient is exactly 0: left out, so the backward trend is n/a
    assert math.isnan(report.backward_log2) and abs(report.forward_log2) < 1
    assert all("gradient exactly 0" in s.note for s in report.body_layers())


def test_zero_initialized_residual_branches_are_left_out_of_the_fit():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(32, 32), nn.Linear(32, 32)
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), *[Block() for _ in range(6)], nn.Linear(32, 32))
    report = diagnose(model, input_shape=(64, 32), generator=gen())
    assert report.verdict == "healthy", report.reason
    assert all(s.note.startswith("zero-initialized") for s in report.layers if "fc2" in s.path)
    assert all("gradient exactly 0" in s.note for s in report.layers if "fc1" in s.path)
    assert math.isfinite(report.backward_log2) and abs(report.backward_log2) < 1


def test_global_pooling_does_not_make_a_flat_conv_stack_vanish():
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    for _ in range(10):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 16))
    g = gen(1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, generator=g)
            nn.init.zeros_(m.bias)
    trends = []
    for hw in (8, 32):  # the pool divides the per-element gradient by hw * hw
        report = diagnose(model, input_shape=(4, 3, hw, hw), generator=gen())
        assert report.verdict == "healthy", (hw, report.reason)
        assert report.weight_layers()[-1].role == "head" and len(report.body_layers()) == 11
        trends.append(report.backward_slope * 10)
    assert all(abs(t) < 1.5 for t in trends)


def test_pre_norm_convs_are_judged_after_the_norm():
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(10):
        conv = nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.mul_(4.0)  # each conv alone scales by ~4x: "exploding" without the norm
        layers += [conv, nn.BatchNorm2d(8), nn.ReLU()]
    model = nn.Sequential(*layers)
    report = diagnose(model, input_shape=(8, 3, 8, 8), generator=gen())
    assert report.verdict == "healthy", report.reason
    assert [s.judged_at for s in report.weight_layers()] == [str(3 * i + 1) for i in range(10)]
    assert all(s.verdict == "healthy" for s in report.layers)


def test_unused_output_has_no_gradient_and_says_why():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(*he_stack(10))
            self.pool = nn.Linear(64, 64)

        def forward(self, x):
            h = self.body(x)
            return h, torch.tanh(self.pool(h[:, 0]))  # the pooled output is not differentiated

    report = diagnose(TwoHeads(), input_shape=(8, 4, 64), generator=gen())
    pool = report.weight_layers()[-1]
    assert pool.path == "pool" and pool.grad_out_std is None and pool.role == "head"
    assert "no gradient: its output does not reach the objective" in pool.note
    assert math.isfinite(report.backward_log2) and "no gradient: 'pool'" in report.reason


def test_synthetic_batch_is_what_diagnose_draws():
    from initscope.diagnostics import synthetic_batch

    model = nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 4))
    before = snapshot(model)
    tokens = synthetic_batch(model, (4, 12), generator=gen(3))
    assert tokens.dtype == torch.long and tokens.shape == (4, 12) and int(tokens.max()) < 50
    assert torch.equal(tokens, synthetic_batch(model, (4, 12), generator=gen(3)))
    assert synthetic_batch(mlp(2, 8), (5, 8), generator=gen()).dtype == torch.float32
    with pytest.raises(ValueError, match="input_shape: expected a batch"):
        synthetic_batch(model, (12,))
    assert_unchanged(model, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_finiteness_flag_matches_isfinite_everywhere(dtype: torch.dtype) -> None:
    """The batch/output check reads two extremes; it must flag a NaN or an infinity wherever it
    sits (head, vectorized body, tail; contiguous or not) exactly as an elementwise isfinite."""
    from initscope.diagnostics._inputs import _all_finite

    g = gen(0)
    for n in (1, 7, 33, 1000):
        for pos in sorted({0, n // 2, n - 1}):
            for bad in (math.nan, math.inf, -math.inf, None):
                t = torch.randn(n, generator=g).to(dtype)
                if bad is not None:
                    t[pos] = bad
                want = float(torch.isfinite(t).all())
                assert _all_finite([t]) == torch.tensor(want)
                assert _all_finite([torch.ones(2, 3, dtype=dtype), t.reshape(1, -1).t()]) == want
    assert _all_finite([]) is None
    assert float(_all_finite([torch.zeros(0, 3, dtype=dtype)])) == 1.0


def _row_groups_one(rows: torch.Tensor, weights: torch.Tensor) -> float:
    """Reference: the identical-row count of one matrix, compared on its own."""
    h1, h2 = rows.sum(1), (rows * weights).sum(1)
    ok = torch.isfinite(h1 + h2) & ((h1 != 0) | (h2 != 0))
    key = torch.where(ok, h2, float("nan"))
    order = torch.argsort(key)
    k2, k1 = key[order], h1[order]
    same = (k2[1:] == k2[:-1]) & (k1[1:] == k1[:-1])
    return float(same.sum() - (same[1:] & same[:-1]).sum())


def test_batched_row_groups_equal_per_matrix_counts() -> None:
    """Row sums are compared in one batch per (rows, device): each count must equal the count of
    its matrix compared alone, with planted copies, zero rows, NaN rows and several row counts."""
    from initscope.diagnostics._hooks import Collector, ModuleStats

    g = gen(0)
    collector = Collector()
    cases: list[tuple[torch.Tensor, ModuleStats]] = []
    for i in range(24):
        units, width = (16, 9) if i % 3 else (7, 5)
        rows = torch.randn(units, width, generator=g)
        for _ in range(i % 5):
            src, dst = torch.randint(0, units, (2,), generator=g).tolist()
            rows[dst] = rows[src]
        if i % 4 == 1:
            rows[2] = 0.0
            rows[3] = 0.0
        if i % 6 == 2:
            rows[1] = math.nan
            rows[4] = math.nan
        if i % 7 == 3:
            rows[:] = rows[0]
        stats = ModuleStats()
        collector.row_groups(rows, into=stats)
        cases.append((rows, stats))
    collector.count_row_groups()
    planted = 0
    for rows, stats in cases:
        weights = collector._key_weights(1, rows.shape[1], rows.device).reshape(-1)
        assert float(stats.groups) == _row_groups_one(rows, weights)
        planted += float(stats.groups) > 0
    assert planted >= 10
