"""Plans: dry run, table, JSON round trip, all-or-nothing apply, untouched parameters, LSUV."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
import torch.nn.functional as F
from helpers import gen, same_tensors, tensors_of
from torch import nn

import initscope
from initscope.policy import Plan

plan_module = importlib.import_module("initscope.plan")
policy_module = importlib.import_module("initscope.policy")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(self.emb(idx).transpose(1, 2))))
        out, _ = self.lstm(h.transpose(1, 2))
        return self.head(out[:, -1])


def test_plan_changes_nothing() -> None:
    for model, x in (
        (Net(), torch.randint(0, 20, (4, 6))),
        (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(8, 2, 16, batch_first=True),
                2,
                enable_nested_tensor=False,
            ),
            torch.randn(2, 5, 8),
        ),
    ):
        model.eval()
        before = tensors_of(model)
        rng = torch.get_rng_state()
        for preset in ("auto", "torch", "gpt2", "fixup"):
            initscope.plan(model, preset, example_input=x, zero_init_residual=True)
        assert same_tensors(before, tensors_of(model))
        assert torch.equal(rng, torch.get_rng_state())
        assert not model.training and all(p.grad is None for p in model.parameters())


def test_plan_lists_every_parameter_with_its_facts() -> None:
    model = Net()
    p = initscope.plan(model)
    assert [e.path for e in p] == [
        "emb.weight",
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "lstm.bias_ih_l0",
        "lstm.bias_hh_l0",
        "head.weight",
        "head.bias",
    ]
    conv = p["conv.weight"]
    assert conv.shape == (8, 8, 3) and conv.fans == initscope.Fans(24, 24, 3)
    assert conv.scheme and conv.std > 0 and "fan" in conv.formula and conv.why
    assert p["emb.weight"].choices[1].rows == (0, 1)
    text = str(p)
    for word in (
        "parameter",
        "shape",
        "fans in/out",
        "scheme",
        "std",
        "formula",
        "why",
        "conv.weight",
        "8x8x3",
        "24/24",
        "Var =",
    ):
        assert word in text
    assert repr(p) == "Plan(preset='auto', model='Net', 11 parameters, 0 untouched)"
    with pytest.raises(KeyError, match="nope"):
        p["nope"]


def test_json_round_trip_and_bit_identical_apply(tmp_path) -> None:
    model = Net()
    p = initscope.plan(model, zero_init_residual=True)
    loaded = Plan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert loaded.to_dict() == p.to_dict()
    path = tmp_path / "plan.json"
    p.to_json(path)
    from_file = Plan.from_dict(json.loads(path.read_text()))
    a, b = Net(), Net()
    p.apply(a, gen(7))
    from_file.apply(b, gen(7))
    assert same_tensors(tensors_of(a), tensors_of(b))
    c = Net()
    loaded.apply(c, gen(8))
    assert not torch.equal(c.conv.weight, a.conv.weight)
    with pytest.raises(ValueError, match="not an initscope plan"):
        Plan.from_dict({"entries": []})


def test_apply_is_all_or_nothing() -> None:
    model = Net()
    model.train()
    model(torch.randint(0, 20, (4, 6)))  # non-trivial BatchNorm statistics
    before = tensors_of(model)
    d = initscope.plan(model).to_dict()
    d["entries"][6]["choices"][0]["params"] = {"std": -1.0}  # the 7th step raises
    d["entries"][6]["choices"][0]["scheme"] = "normal"
    broken = Plan.from_dict(d)
    with pytest.raises(ValueError, match="std"):
        broken.apply(model, gen())
    assert same_tensors(before, tensors_of(model))

    calls = 0
    real = policy_module.Choice.apply

    def flaky(self, tensor, generator=None):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("boom")
        return real(self, tensor, generator)

    good = initscope.plan(model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policy_module.Choice, "apply", flaky)
        with pytest.raises(RuntimeError, match="boom"):
            good.apply(model, gen())
    assert calls == 5 and same_tensors(before, tensors_of(model))


def test_plan_is_validated_against_the_model_first() -> None:
    p = initscope.plan(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    other = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    before = tensors_of(other)
    with pytest.raises(ValueError, match=r"2\.weight has shape \(3, 4\), the plan says \(2, 4\)"):
        p.apply(other, gen())
    with pytest.raises(ValueError, match="has no parameter '2.weight'"):
        p.apply(nn.Sequential(nn.Linear(4, 4)), gen())
    with pytest.raises(TypeError, match="generator"):
        p.apply(other, generator=0)  # type: ignore[arg-type]
    assert same_tensors(before, tensors_of(other))


def test_untouched_parameters_warn_and_stay() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gamma = nn.Parameter(torch.full((4,), 0.3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.remainder(self.fc(x), self.gamma)  # no use the policy knows

    model = Scaled()
    with pytest.warns(UserWarning, match=r"1 parameter\(s\) covered by no rule .*: gamma"):
        p = initscope.initialize(model, generator=gen())
    assert [e.path for e in p.untouched] == ["gamma"]
    assert "no rule of preset 'auto' covers parameter 'gamma'" in p["gamma"].why
    assert torch.equal(model.gamma.detach(), torch.full((4,), 0.3))
    p = initscope.initialize(model, rules=[("gamma", "ones")], generator=gen())
    assert not p.untouched and torch.equal(model.gamma.detach(), torch.ones(4))


def test_initialize_is_plan_plus_apply_and_reproducible() -> None:
    a, b = Net(), Net()
    pa = initscope.initialize(a, generator=gen(3))
    initscope.plan(b).apply(b, gen(3))
    assert isinstance(pa, Plan) and same_tensors(tensors_of(a), tensors_of(b))
    assert torch.equal(a.emb.weight[0], torch.zeros(8))
    assert torch.equal(a.lstm.bias_ih_l0[8:16].detach(), torch.ones(8))


def test_lsuv_preset_needs_data_and_runs_lsuv() -> None:
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(32, 32), nn.Tanh())])
    with pytest.raises(ValueError, match="needs data"):
        initscope.plan(model, "lsuv")
    x = torch.randn(256, 32, generator=gen(1))
    before = tensors_of(model)
    p = initscope.plan(model, "lsuv", data=x)
    assert same_tensors(before, tensors_of(model)) and p.needs_data
    assert "LSUV" in p["0.weight"].why and p["0.weight"].scheme == "orthogonal"
    p.apply(model, gen(2))
    assert p.lsuv_result is not None and all(r.converged for r in p.lsuv_result.layers)
    h = x
    for m in model:
        h = m(h)
        if isinstance(m, nn.Linear):
            assert abs(h.std().item() - 1) <= 0.1
    loaded = Plan.from_dict(p.to_dict())
    with pytest.raises(ValueError, match="needs data"):
        loaded.apply(model, gen())


def test_print_summarizes_repeated_layers() -> None:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 2))
    p = initscope.plan(model)
    text = str(p)
    assert len(text.splitlines()) < 40 and "[2-98 step 2].weight" in text and "x49" in text
    rows = p.rows()
    assert sum(count for _, _, count in rows) == len(p) == 102
    assert len(p.rows(summarize=False)) == 102


def test_rules_that_cannot_apply_warn_and_bad_numbers_raise_before_any_write() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    before = tensors_of(model)
    with pytest.warns(UserWarning, match=r"rule 0 .*delta_orthogonal.* cannot apply to 0.weight"):
        p = initscope.plan(model, rules=[("0.weight", "delta_orthogonal")])
    assert p["0.weight"].scheme != "delta_orthogonal"
    for scheme, kwargs, error in (
        ("orthogonal", {"gain": float("nan")}, ValueError),
        ("normal", {"std": float("inf")}, ValueError),
        ("orthogonal", {"gain": None}, TypeError),
        ("normal", {"std": "0.1"}, TypeError),
    ):
        name = next(iter(kwargs))
        with pytest.raises(error, match=rf"rules\[0\]: {scheme} argument {name} must be"):
            initscope.initialize(model, rules=[("0.weight", scheme, kwargs)], generator=gen())
    assert same_tensors(before, tensors_of(model))
