"""Tests of initscope.init_head: zero, small, calibrated and probe heads with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import gen
from torch import nn

import initscope
from initscope import init_head

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    """A body (Linear, BatchNorm, ReLU), a Linear head, an optional link after it."""

    def __init__(self, out: int = 1, link=None, width: int = 32) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, width), nn.BatchNorm1d(width), nn.ReLU())
        self.head = nn.Linear(width, out)
        self.link = link

    def forward(self, x):
        z = self.head(self.body(x))
        return z if self.link is None else self.link(z)


def features(model: Net, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.body(x).double()


X = torch.randn(400, 5, generator=gen(1))


def head_out(model: Net) -> torch.Tensor:
    w, b = model.head.weight.detach().double(), model.head.bias.detach().double()
    return features(model, X) @ w.T + b


def test_probe_identity_link_recovers_an_exact_linear_map():
    model = Net(out=2)
    h = features(model, X)
    w_true = torch.randn(2, 32, generator=gen(2), dtype=torch.float64)
    y = (h @ w_true.T + torch.tensor([3.0, -1.0], dtype=torch.float64)).float()
    r = init_head(model, (X, y), "probe", ridge=0.0)
    assert r.link == "identity" and r.link_from == "model"
    pred = head_out(model)
    assert float((pred - y.double()).abs().max()) < 1e-4 * float(y.abs().max())
    assert r.loss < 1e-8


@pytest.mark.parametrize(
    "link, make_y",
    [
        (None, lambda u: 2.0 + 3.0 * u),
        (F.softplus, lambda u: F.softplus(u) + 0.2),
        (torch.exp, lambda u: torch.exp(0.5 * u)),
        (torch.sigmoid, lambda u: torch.sigmoid(u)),
    ],
    ids=["identity", "softplus", "exp", "sigmoid"],
)
def test_calibrated_mean_preactivation_and_spread(link, make_y):
    model = Net(link=link)
    y = make_y(torch.randn(400, 1, generator=gen(3)))
    r = init_head(model, (X, y), "calibrated", spread=0.2, generator=gen(4))
    expected = {None: "identity", F.softplus: "softplus", torch.exp: "exp",
                torch.sigmoid: "sigmoid"}[link]  # fmt: skip
    assert r.link == expected
    z = head_out(model)
    m = y.double().mean()
    inverse = {
        "identity": m,
        "softplus": torch.log(torch.expm1(m)),
        "exp": torch.log(m),
        "sigmoid": torch.log(m / (1 - m)),
    }[expected]
    assert abs(float(z.mean()) - float(inverse)) < 1e-5  # float32 head
    assert abs(r.pred_std / r.target_std - 0.2) < 1e-4
    with torch.no_grad():
        p = model(X).double()
    assert abs(float(p.std()) / float(y.double().std()) - 0.2) < 1e-3


def test_calibrated_classes_start_at_the_class_frequencies():
    model = Net(out=3)
    y = torch.cat([torch.zeros(200), torch.ones(150), 2 * torch.ones(50)]).long()
    r = init_head(model, (X, y), "calibrated", spread=0.0)
    assert r.link == "softmax"
    with torch.no_grad():
        p = torch.softmax(model(X), -1)
    assert torch.allclose(p, torch.tensor([0.5, 0.375, 0.125]).expand(400, 3), atol=1e-6)
    assert abs(r.loss - (-(0.5 * math.log(0.5) + 0.375 * math.log(0.375)
                           + 0.125 * math.log(0.125)))) < 1e-6  # fmt: skip


def test_probe_logistic_beats_calibrated_on_separable_classes():
    model = Net(out=2)
    h = features(model, X)
    y = (h[:, 0] > h[:, 0].median()).long()
    cal = init_head(model, (X, y), "calibrated")
    probe = init_head(model, (X, y), "probe", steps=100)
    assert probe.loss < 0.25 * cal.loss
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).float().mean()
    assert acc > 0.97


def test_zero_and_small():
    model = Net(out=2)
    y = torch.randn(400, 2, generator=gen(5))
    init_head(model, (X, y), "zero")
    assert not model.head.weight.any() and not model.head.bias.any()
    big = Net(out=256, width=256)
    r = init_head(big, (X, torch.randn(400, 256, generator=gen(6))), "small", scale=0.01,
                  generator=gen(7))  # fmt: skip
    std = initscope.plan(big)["head.weight"].std
    assert abs(r.weight_std / (0.01 * std) - 1) < 0.02  # 65k draws
    assert not big.head.bias.any()


def test_frozen_backbone_and_state_untouched():
    model = Net(out=1, link=F.softplus)
    model.train()
    for p in model.body.parameters():
        p.requires_grad_(False)
    before = {k: v.clone() for k, v in model.body.state_dict().items()}
    rng = torch.get_rng_state()
    y = F.softplus(torch.randn(400, 1, generator=gen(8)))
    init_head(model, (X, y), "probe", generator=gen(9))
    assert model.training and model.body[1].training
    for k, v in model.body.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running stats included
    assert all(not p.requires_grad for p in model.body.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"mode": "warm"}, ValueError, "mode"),
        ({"link": "tanh"}, ValueError, "link"),
        ({"spread": -1.0}, ValueError, "spread"),
        ({"steps": 0}, ValueError, "steps"),
        ({"head": "body.1"}, ValueError, "nn.Linear"),
        ({"head": 3}, TypeError, "head"),
    ],
)
def test_bad_arguments_change_nothing(kwargs, error, match):
    model = Net()
    snap = snapshot(model)
    y = torch.randn(400, 1, generator=gen(1))
    with pytest.raises(error, match=match):
        init_head(model, (X, y), **kwargs)
    assert all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def test_bad_data_and_frozen_head():
    y = torch.rand(400, 1, generator=gen(1))
    with pytest.raises(ValueError, match="pass link="):
        init_head(Net(link=torch.tanh), (X, y))
    model = Net()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="do not fit"):
        init_head(model, (X, torch.randn(400, 3)))
    with pytest.raises(ValueError, match="class targets"):
        init_head(model, (X, torch.zeros(400).long()))
    with pytest.raises(TypeError, match="pair"):
        init_head(model, X)
    model.head.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        init_head(model, (X, y))
    sp = Net(link=F.softplus)
    with pytest.raises(ValueError, match="softplus"):
        init_head(sp, (X, -y))
    assert all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())
