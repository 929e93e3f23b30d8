"""Real architectures (Hugging Face, torchvision, timm) at small sizes, random weights, nothing
downloaded: every weight a matmul-like op consumes is planned by ``auto`` and ``gpt2``, planning
changes nothing, and every planned standard deviation is what ``initialize`` draws.

Run them all with ``make zoo`` (the registry build of torch, with torchvision, timm and
transformers: ``pip install -e ".[zoo]"``); a model whose library cannot be imported is skipped
with the reason."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from zoo_models import ZOO, ZooModel, matmul_params, unavailable

import initscope

pytestmark = pytest.mark.zoo


def _build(z: ZooModel) -> tuple[nn.Module, Any]:
    why = unavailable(z.library)
    if why is not None:
        pytest.skip(why)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return z.build()


def _plan(model: nn.Module, x: Any, preset: str = "auto") -> initscope.Plan:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libraries' own deprecation notices during the trace
        return initscope.plan(model, preset, example_input=x)


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "buffers": [b.detach().clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "grad": [(p.requires_grad, p.grad) for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["tensors"].keys() == b["tensors"].keys()
        and all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])
        and all(torch.equal(x, y) for x, y in zip(a["buffers"], b["buffers"], strict=True))
        and a["modes"] == b["modes"]
        and a["grad"] == b["grad"]
        and torch.equal(a["rng"], b["rng"])
    )


IDS = [z.name for z in ZOO]
ZOO_BY_NAME = {z.name: z for z in ZOO}


@pytest.mark.parametrize("z", ZOO, ids=IDS)
def test_every_matmul_weight_is_planned_and_planning_changes_nothing(z: ZooModel) -> None:
    model, x = _build(z)
    consumed = matmul_params(model, x)
    assert consumed, "the watch found no weight: the test itself would be vacuous"
    names: dict[int, set[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), set()).add(n)
    before = _state(model)
    for preset in ("auto", "gpt2"):
        plan = _plan(model, x, preset)
        touched = {e.path for e in plan if e.touched}
        missed = sorted(n for n in consumed if not names[id(model.get_parameter(n))] & touched)
        assert not missed, f"{preset}: weights consumed by a matmul-like op left untouched"
        assert len(plan) == len(list(model.parameters()))  # tied weights: one entry
    assert _same(before, _state(model))


def _tolerance(n: int) -> float:
    return 6 / math.sqrt(2 * n) + 0.01  # the sample std's relative error is ~ 1/sqrt(2n)


@pytest.mark.parametrize("z", ZOO, ids=IDS)
def test_initialize_draws_every_planned_std(z: ZooModel) -> None:
    model, x = _build(z)
    plan = _plan(model, x)
    plan.apply(model, generator=torch.Generator().manual_seed(0))
    checked = 0
    for e in plan:
        if len(e.choices) != 1 or e.choices[0].rows is not None:
            continue
        c = e.choices[0]
        w = model.get_parameter(e.path).detach().double()
        if c.std == 0.0:
            assert torch.all(w == w.flatten()[0]), e.path
            continue
        if w.numel() < 1000:
            continue
        measured = float(w.std())
        assert abs(measured / c.std - 1) < _tolerance(w.numel()), (e.path, measured, c.std)
        checked += 1
    assert checked >= 3


def test_gpt2_preset_is_hugging_face_recipe() -> None:
    """HF GPT-2's ``_init_weights``: N(0, 0.02) everywhere, ``c_proj`` N(0, 0.02 /
    sqrt(2 n_layer)), LayerNorm weight 1 / bias 0, biases 0; the tied head is one entry."""
    z = next(z for z in ZOO if z.name == "hf_gpt2")
    model, x = _build(z)
    plan = _plan(model, x, "gpt2")
    n_layer = model.config.n_layer
    assert "lm_head.weight" not in {e.path for e in plan}
    assert not plan.untouched
    for e in plan:
        c = e.choices[0]
        leaf = e.path.rsplit(".", 1)[-1]
        if ".ln_" in e.path or e.path.startswith("transformer.ln_f"):
            assert c.scheme == ("ones" if leaf == "weight" else "zeros"), e.path
        elif leaf == "bias":
            assert c.scheme == "zeros", e.path
        elif e.path.endswith("c_proj.weight"):
            assert (c.scheme, c.std) == ("normal", pytest.approx(0.02 / math.sqrt(2 * n_layer)))
        else:
            assert (c.scheme, c.std) == ("normal", pytest.approx(0.02)), e.path
    fc = plan["transformer.h.0.mlp.c_fc.weight"]
    assert fc.fans is not None and (fc.fans.fan_in, fc.fans.fan_out) == (64, 256)  # (in, out)


def test_auto_reads_language_model_embeddings() -> None:
    """T5: the tied head reads the decoder output times d^-0.5, so ``auto`` gives the shared
    embedding std 1 (logits at unit variance); GPT-2: position and token embeddings summed at
    the same std, 1/sqrt(d) from the tied head."""
    t5, x = _build(next(z for z in ZOO if z.name == "hf_t5"))
    p = _plan(t5, x)
    assert p["shared.weight"].std == pytest.approx(1.0)
    plan = initscope.plan(t5, example_input=x, rules=[("shared.weight", "normal", {"std": 0.5})])
    assert plan["shared.weight"].std == 0.5  # a rule reaches a tied weight by its own path
    gpt, x = _build(next(z for z in ZOO if z.name == "hf_gpt2"))
    p = _plan(gpt, x)
    assert p["transformer.wte.weight"].std == pytest.approx(64**-0.5)
    assert p["transformer.wpe.weight"].std == pytest.approx(64**-0.5)


def test_stochastic_depth_and_layer_scale_are_seen_through() -> None:
    z = next(z for z in ZOO if z.name == "timm_vit_tiny_dp")
    model, x = _build(z)
    layers = {layer.path: layer for layer in initscope.inspect_model(model, x)}
    assert layers["blocks.0.attn.proj"].ends_residual
    assert layers["blocks.0.mlp.fc2"].ends_residual
    cnx, x = _build(next(z for z in ZOO if z.name == "tv_convnext_tiny_small"))
    plan = _plan(cnx, x)
    e = plan["features.1.0.layer_scale"]
    assert e.choices[0].scheme == "constant" and e.choices[0].params["val"] == pytest.approx(1e-6)
    ends = [layer for layer in initscope.inspect_model(cnx, x) if layer.ends_residual]
    assert len(ends) >= 4  # every CNBlock, through LayerScale and StochasticDepth


def _diagnose(model: nn.Module, x: Any) -> initscope.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return initscope.diagnose(model, x, generator=torch.Generator().manual_seed(3))


def _own_and_auto(z: ZooModel) -> tuple[initscope.Report, initscope.Report]:
    own, x = _build(z)
    model, _ = _build(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        initscope.initialize(model, example_input=x, generator=torch.Generator().manual_seed(0))
    return _diagnose(own, x), _diagnose(model, x)


def _trend(r: initscope.Report) -> float:
    """The backward trend the verdict rules read: the fitted change over the body."""
    return r.backward_slope * (len(r.body_layers()) - 1)


# BatchNorm networks in train mode: the gradient grows toward the input with any
# initialization (Yang et al. 2019); docs/zoo.md gives the numbers for these two.
_BN_GROWTH = (
    "BatchNorm gradient growth toward the input in train mode, with the model's own init too "
    "(Yang et al. 2019): docs/zoo.md, 'Where auto cannot reach healthy'"
)
_NOT_HEALTHY = {"tv_efficientnet_b0": _BN_GROWTH, "tv_mobilenet_v3_small": _BN_GROWTH}
HEALTHY = [
    pytest.param(z, marks=pytest.mark.xfail(strict=True, reason=_NOT_HEALTHY[z.name]))
    if z.name in _NOT_HEALTHY
    else z
    for z in ZOO
]


@pytest.mark.parametrize("z", HEALTHY, ids=IDS)
def test_auto_body_is_healthy_and_never_a_bit_worse_than_own(z: ZooModel) -> None:
    own, auto = _own_and_auto(z)
    for mine, theirs in ((auto.forward_log2, own.forward_log2), (_trend(auto), _trend(own))):
        assert math.isfinite(mine), auto.reason
        if math.isfinite(theirs):
            assert abs(mine) <= abs(theirs) + 1.0, (mine, theirs)
    assert auto.verdict == "healthy", auto.reason


@pytest.mark.parametrize("z", [ZOO_BY_NAME[n] for n in _NOT_HEALTHY], ids=list(_NOT_HEALTHY))
def test_auto_never_a_bit_worse_than_own_where_healthy_cannot_hold(z: ZooModel) -> None:
    own, auto = _own_and_auto(z)
    assert abs(auto.forward_log2) <= abs(own.forward_log2) + 1.0
    assert abs(_trend(auto)) <= abs(_trend(own)) + 1.0
    assert auto.verdict == "exploding" and _trend(auto) > 2  # the documented property, honestly


@pytest.mark.parametrize("z", ZOO, ids=IDS)
def test_diagnose_sees_every_weight_layer_and_changes_nothing(z: ZooModel) -> None:
    """Every module whose parameter a matmul-like op consumes (found by watching torch calls,
    independently of initscope) has a row; e.g. GPT-2's four Conv1D per block."""
    model, x = _build(z)
    holders: dict[int, set[str]] = {}  # a tied weight: every module holding it
    for n, p in model.named_parameters(remove_duplicate=False):
        holders.setdefault(id(p), set()).add(n.rsplit(".", 1)[0])
    consumed = [holders[id(model.get_parameter(n))] for n in matmul_params(model, x)]
    before = _state(model)
    report = _diagnose(model, x)
    assert _same(before, _state(model))
    rows = {s.path.split("#")[0] for s in report.layers if s.kind != "activation"}
    missed = sorted(min(h) for h in consumed if not h & rows)
    assert consumed and not missed, missed
    per_block = [s for s in report.weight_layers() if ".0." in f".{s.path}."]
    assert per_block or len(report.weight_layers()) >= 3


def test_gpt2_diagnose_counts_four_conv1d_per_block() -> None:
    model, x = _build(ZOO_BY_NAME["hf_gpt2"])
    report = _diagnose(model, x)
    conv1d = [s for s in report.weight_layers() if s.type == "Conv1D"]
    assert len(conv1d) == 4 * model.config.n_layer  # c_attn, attn.c_proj, c_fc, mlp.c_proj


@pytest.mark.parametrize("name", ["hf_gpt2", "tv_resnet18"])
def test_lsuv_converged_layers_are_on_target_when_remeasured(name: str) -> None:
    model, x = _build(ZOO_BY_NAME[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = initscope.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    converged = [layer for layer in result.layers if layer.status == "converged"]
    assert len(converged) >= 8
    modules = dict(model.named_modules())
    seen: dict[str, float] = {}

    def measure(path: str, y: torch.Tensor) -> None:  # the first call, as lsuv measured it
        seen.setdefault(path, float(y.float().std(unbiased=False)))

    handles = [
        modules[layer.path].register_forward_hook(lambda m, a, y, p=layer.path: measure(p, y))
        for layer in converged
    ]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(**x) if isinstance(x, dict) else model(x)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    off = {p: s for p, s in seen.items() if abs(s - result.target_std) > result.tol + 1e-4}
    assert seen.keys() == {layer.path for layer in converged} and not off, off
