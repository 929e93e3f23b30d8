"""Tests of initscope.lsuv: one progressive pass in execution order."""

from __future__ import annotations

import copy
import json
import os
import socket
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from helpers import gen, mlp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initscope import init as iinit
from initscope.calibration import LSUVResult, lsuv

pytestmark = pytest.mark.usefixtures("one_thread")


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed))


def output_stats(model: nn.Module, *args, per_channel: bool = False, **kwargs):
    """A plain forward pass with hooks: each weight layer's output std (first call)."""
    found: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name, module):
        def fn(mod, inp, out):
            y = out[0] if isinstance(out, tuple) else out
            if name in found:
                return
            if per_channel:
                ch = 1 if isinstance(mod, nn.modules.conv._ConvNd) else y.dim() - 1
                dims = [d for d in range(y.dim()) if d != ch]
                found[name] = y.double().std(dim=dims)
            else:
                found[name] = torch.stack([y.double().std(), y.double().mean()])

        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.MultiheadAttention)):
            handles.append(m.register_forward_hook(hook(name, m)))
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused path skips submodule hooks
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for h in handles:
            h.remove()
    return found


def same_params(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        [m.training for m in model.modules()],
    )


def assert_unchanged(model: nn.Module, snap) -> None:
    state, modes = snap
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:
        assert torch.equal(state[k], now[k]), k
    assert [m.training for m in model.modules()] == modes


# ------------------------------------------------------------------------- the core property


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2, groups=2)
        self.c3 = nn.Conv1d(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.tanh(self.c2(x))
        x = torch.relu(self.up(x))  # (N, 8, 16, 16)
        x = self.c3(x.flatten(2))
        return self.fc(x.mean(-1))


@pytest.mark.parametrize("target", [1.0, 0.5])
def test_every_layer_within_tol_of_target(target):
    model = ConvNet()
    x = randn(16, 3, 8, 8) * 5
    result = lsuv(model, x, target_std=target, generator=gen(1))
    assert [r.path for r in result.layers] == ["c1", "c2", "up", "c3", "fc"]
    assert result.converged
    stds = output_stats(model, x)
    assert stds.keys() == {"c1", "c2", "up", "c3", "fc"}
    for name, (std, _) in stds.items():
        assert abs(std - target) <= 0.1 + 1e-6, (name, std)
        assert result[name].std_after == pytest.approx(float(std), rel=1e-5)


def test_deep_relu_mlp_all_layers_converge_and_before_is_off_target():
    model = mlp(depth=30, width=64)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.05, generator=gen(2))
    x = randn(128, 64)
    before = output_stats(model, x)
    assert max(abs(s - 1) for s, _ in before.values()) > 0.5
    result = lsuv(model, x, tol=0.05, orthogonal=False)
    assert all(r.iterations >= 1 for r in result.layers)
    for name, (std, _) in output_stats(model, x).items():
        assert abs(std - 1) <= 0.05 + 1e-6, name


def test_orthogonal_preinit_uses_the_generator():
    model = nn.Sequential(nn.Linear(48, 24))
    x = randn(64, 48)
    result = lsuv(model, x, generator=gen(7))
    w = model[0].weight.detach()
    expected = iinit.orthogonal_(torch.empty(24, 48), generator=gen(7))
    torch.testing.assert_close(w, expected * result["0"].scale, rtol=1e-5, atol=1e-6)
    # rows orthonormal up to the LSUV scale
    gram = w @ w.T / result["0"].scale ** 2
    torch.testing.assert_close(gram, torch.eye(24), atol=1e-5, rtol=0)
    # reproducible; orthogonal=False keeps the weight's direction
    again = nn.Sequential(nn.Linear(48, 24))
    lsuv(again, x, generator=gen(7))
    assert torch.equal(again[0].weight, model[0].weight)
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(48, 24))
    w0 = plain[0].weight.detach().clone()
    r = lsuv(plain, x, orthogonal=False)
    torch.testing.assert_close(plain[0].weight.detach(), w0 * r["0"].scale)
    assert not r["0"].orthogonalized and result["0"].orthogonalized


class Reversed(nn.Module):
    """Registered last-to-first, executed first-to-last."""

    def __init__(self, depth: int = 8, width: int = 32):
        super().__init__()
        torch.manual_seed(3)
        self.depth = depth
        for i in reversed(range(depth)):
            self.add_module(f"fc{i}", nn.Linear(width, width))

    def forward(self, x):
        for i in range(self.depth):
            x = torch.relu(getattr(self, f"fc{i}")(x))
        return x


def test_execution_order_not_registration_order():
    model = Reversed()
    assert [n for n, _ in model.named_children()][0] == "fc7"
    x = randn(64, 32) * 3
    result = lsuv(model, x, generator=gen(0))
    assert [r.path for r in result.layers] == [f"fc{i}" for i in range(8)]
    for name, (std, _) in output_stats(model, x).items():
        assert abs(std - 1) <= 0.1 + 1e-6, name


# ------------------------------------------------------------------------- special layers


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.inp = nn.Linear(16, 16)
        self.block = nn.Linear(16, 16)
        self.unused = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.inp(x))
        x = torch.relu(self.block(x))
        x = torch.relu(self.block(x))
        return self.head(x)


def test_shared_module_scaled_on_first_call_and_never_run_reported():
    model = Shared()
    unused_w = model.unused.weight.detach().clone()
    x = randn(64, 16)
    result = lsuv(model, x, generator=gen(0))
    assert [r.path for r in result.layers] == ["inp", "block", "head", "unused"]
    block = result["block"]
    assert block.calls == 2 and block.status == "converged"
    assert any("shared" in n for n in block.notes)
    assert result["unused"].status == "never_ran" and result["unused"].calls == 0
    assert any("never ran" in n for n in result["unused"].notes)
    assert torch.equal(model.unused.weight, unused_w)  # not even orthogonalized
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not result.converged
    stds = output_stats(model, x)  # first call of block
    for name in ("inp", "block", "head"):
        assert abs(stds[name][0] - 1) <= 0.1 + 1e-6


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 16)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        return self.out(x + self.fc2(torch.relu(self.fc1(x))))


def test_skip_zero_init_leaves_residual_branch_end_at_zero():
    model = Residual()
    x = randn(64, 16)
    result = lsuv(model, x, generator=gen(0))
    assert not model.fc2.weight.any() and not model.fc2.bias.any()
    assert result["fc2"].status == "zero_init" and not result["fc2"].orthogonalized
    assert result["fc2"].std_before == 0.0
    assert result["fc1"].converged and result["out"].converged and result.converged
    model = Residual()
    result = lsuv(model, x, skip_zero_init=False, generator=gen(0))
    assert model.fc2.weight.any() and result["fc2"].converged


def test_dead_layer_is_reported_not_divided_by_zero():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 8))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every unit negative: relu output all zero
        model[2].bias.zero_()
    x = randn(32, 8)
    result = lsuv(model, x, orthogonal=False)
    assert result["2"].status == "dead" and result["2"].std_before == 0.0
    assert result["2"].iterations == 0 and result["2"].scale == 1.0
    assert any("dead" in n for n in result["2"].notes)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert result["3"].status == "dead"  # its input is the dead layer's constant output


def test_center_zeroes_the_mean_through_the_bias():
    torch.manual_seed(7)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)
    )
    x = randn(256, 16) + 2.0
    plain = copy.deepcopy(model)
    lsuv(plain, x, generator=gen(0))
    with torch.no_grad():
        h = plain[2](plain[1](plain[0](x)))
    assert h.mean(0).abs().max() > 0.3  # relu inputs: channel means are off without center
    centered = copy.deepcopy(model)
    result = lsuv(centered, x, center=True, generator=gen(0))
    assert result.converged
    for name, (std, mean) in output_stats(centered, x).items():
        assert abs(std - 1) <= 0.1 + 1e-6 and abs(mean) <= 1e-5, name
    # per channel: every channel mean zero and every channel std on target
    pc = copy.deepcopy(model)
    lsuv(pc, x, center=True, per_channel=True, generator=gen(0))
    with torch.no_grad():
        h = pc[2](pc[1](pc[0](x)))
    assert h.mean(0).abs().max() <= 1e-5
    assert (h.std(0) - 1).abs().max() <= 0.1 + 1e-6


def test_center_without_bias_is_noted():
    model = nn.Sequential(nn.Linear(8, 8, bias=False))
    result = lsuv(model, randn(32, 8), center=True, generator=gen(0))
    assert "no bias: not centered" in result["0"].notes and result.converged


def test_per_channel_conv_and_transposed_conv():
    model = ConvNet()
    x = randn(16, 3, 8, 8)
    result = lsuv(model, x, per_channel=True, generator=gen(2))
    assert result.converged
    stds = output_stats(model, x, per_channel=True)
    for name, std in stds.items():
        assert std.numel() > 1
        assert (std - 1).abs().max() <= 0.1 + 1e-6, name


def test_per_channel_equalizes_unequal_rows():
    torch.manual_seed(13)
    x = randn(128, 16)

    def make():
        m = nn.Sequential(nn.Linear(16, 8))
        with torch.no_grad():
            m[0].weight.mul_(torch.arange(1.0, 9.0)[:, None])
        return m

    per = make()
    assert lsuv(per, x, per_channel=True, orthogonal=False).converged
    assert (output_stats(per, x, per_channel=True)["0"] - 1).abs().max() <= 0.1 + 1e-6
    glob = make()
    assert lsuv(glob, x, orthogonal=False).converged  # the whole output on target ...
    spread = output_stats(glob, x, per_channel=True)["0"]
    assert spread.max() / spread.min() > 4  # ... but the channels stay unequal


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.embed = nn.Linear(6, 16)
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.mha(h, h, h)
        return self.enc(a)


def test_multihead_attention_scaled_through_out_proj():
    model = Attn().train()
    x = randn(8, 5, 6)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    in_proj = model.mha.in_proj_weight.detach().clone()
    result = lsuv(model, x, generator=gen(3))
    assert torch.backends.mha.get_fastpath_enabled() == fastpath
    assert model.training and model.enc.training
    paths = [r.path for r in result.layers]
    assert paths == ["embed", "mha", "enc.self_attn", "enc.linear1", "enc.linear2"]
    assert "mha.out_proj" not in paths and result.converged
    assert not torch.equal(model.mha.in_proj_weight, in_proj)  # orthonormal slices
    for q in model.mha.in_proj_weight.detach().chunk(3):
        torch.testing.assert_close(q @ q.T, torch.eye(16), atol=1e-5, rtol=0)
    model.eval()
    stds = output_stats(model, x)
    for name in paths:
        assert abs(stds[name][0] - 1) <= 0.1 + 1e-6, name


# ------------------------------------------------------------------------- data and options


def test_batch_forms_and_dataloader_pooling():
    x, y = randn(64, 16), torch.arange(64)
    base = mlp(3, 16)
    by_tensor = copy.deepcopy(base)
    lsuv(by_tensor, x, generator=gen(0))
    for data, kw in [
        ((x, y), {}),
        ([x, y], {}),
        ({"images": x, "y": y}, {"get_input": lambda b: b["images"]}),
    ]:
        m = copy.deepcopy(base)
        lsuv(m, data, generator=gen(0), **kw)
        assert same_params(m, by_tensor)

    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = copy.deepcopy(base)

        def forward(self, images, scale=1.0):
            return self.net(images * scale)

    kw_model = Kw()
    r = lsuv(kw_model, {"images": x, "scale": 1.0}, generator=gen(0))  # dict -> **kwargs
    assert r.converged
    assert same_params(kw_model.net, by_tensor)
    # num_batches: the statistics of two batches pooled == one concatenated batch
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    pooled = copy.deepcopy(base)
    r = lsuv(pooled, loader, num_batches=2, generator=gen(0))
    assert r.num_batches == 2
    assert same_params(pooled, by_tensor)
    first = copy.deepcopy(base)
    lsuv(first, loader, generator=gen(0))
    assert not same_params(first, by_tensor)
    with pytest.raises(ValueError, match="num_batches=3"):
        lsuv(copy.deepcopy(base), loader, num_batches=3)
    with pytest.raises(ValueError, match="DataLoader"):
        lsuv(copy.deepcopy(base), x, num_batches=2)
    ragged = [randn(4, 16), randn(4, 8)]
    snap = snapshot(base)
    with pytest.raises(ValueError, match="cannot be pooled"):
        lsuv(base, ragged_loader(ragged), num_batches=2)
    assert_unchanged(base, snap)


def ragged_loader(batches):
    yield from batches


def test_layers_selection_by_type_glob_and_predicate():
    model = ConvNet()
    x = randn(8, 3, 8, 8)
    for spec, expected in [
        (nn.Conv2d, ["c1", "c2"]),
        ("c*", ["c1", "c2", "c3"]),
        ([nn.Linear, "up"], ["up", "fc"]),
        (lambda path, m: getattr(m, "bias", None) is not None and path.endswith("3"), ["c3"]),
    ]:
        m = ConvNet()
        before = {k: v.clone() for k, v in m.state_dict().items()}
        r = lsuv(m, x, layers=spec, generator=gen(0))
        assert [layer.path for layer in r.layers] == expected
        changed = {
            k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])
        }
        assert changed == set(expected)
    norm = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
    r = lsuv(norm, randn(32, 8), layers=nn.LayerNorm, target_std=2.0)
    assert [x.path for x in r.layers] == ["1"] and r.converged
    assert norm[1].weight.detach().mean() == pytest.approx(2.0, rel=0.06)
    del model


def test_parametrized_weight_is_reported_unsupported_and_left_alone():
    torch.manual_seed(14)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    nn.utils.parametrizations.weight_norm(model[0])
    originals = [t.detach().clone() for t in model[0].parametrizations.weight.parameters()]
    result = lsuv(model, randn(32, 8), generator=gen(0))
    assert result["0"].status == "unsupported" and "parametrized" in result["0"].notes[0]
    assert result["2"].converged and not result.converged
    for t, v in zip(model[0].parametrizations.weight.parameters(), originals, strict=True):
        assert torch.equal(t, v)


def test_modes_and_buffers_restored_and_pass_runs_in_eval():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.Linear(16, 16))
    model.train()
    model[2].eval()  # mixed modes are restored module by module
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = randn(64, 16)
    lsuv(model, x, generator=gen(0))
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k  # eval mode: running statistics untouched
    model.eval()
    assert abs(output_stats(model, x)["3"][0] - 1) <= 0.1 + 1e-6


def test_progress_bar(capsys):
    lsuv(mlp(3, 8), randn(16, 8), progress=True, generator=gen(0))
    err = capsys.readouterr().err
    assert "LSUV" in err and "3/3" in err


def test_result_views():
    result = lsuv(Shared(), randn(32, 16), generator=gen(0))
    assert isinstance(result, LSUVResult)
    d = json.loads(json.dumps(result.to_dict()))
    assert [x["path"] for x in d["layers"]] == ["inp", "block", "head", "unused"]
    assert d["converged"] is False and d["layers"][1]["calls"] == 2
    text = str(result)
    assert "LSUV" in text and "never_ran" in text and "block" in text
    with pytest.raises(KeyError, match="nope"):
        result["nope"]


# ------------------------------------------------------------------------- bad input


def _bad_cases():
    x = randn(16, 8)
    nan, inf = x.clone(), x.clone()
    nan[3, 2] = float("nan")
    inf[0, 0] = float("inf")
    return [
        ("nan", lambda: mlp(3, 8), nan, "NaN or inf"),
        ("inf", lambda: mlp(3, 8), (inf, torch.zeros(16)), "NaN or inf"),
        ("empty", lambda: mlp(3, 8), torch.empty(0, 8), "empty batch"),
        ("empty tuple", lambda: mlp(3, 8), (), "empty batch"),
        ("no layer", lambda: nn.Sequential(nn.ReLU(), nn.Tanh()), x, "no eligible layer"),
        ("no tensor", lambda: mlp(3, 8), {"a": 1}, "no tensor"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_and_changes_nothing(case):
    _, make, data, msg = case
    model = make()
    model.train()
    snap = snapshot(model)
    with pytest.raises(ValueError, match=msg):
        lsuv(model, data, generator=gen(0))
    assert_unchanged(model, snap)


class Fails(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(10)
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x):
        self.b(self.bn(self.a(x)))
        raise RuntimeError("boom after two layers were scaled")


def test_exception_midway_restores_the_model():
    model = Fails().train()
    snap = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        lsuv(model, randn(16, 8), generator=gen(0))
    assert_unchanged(model, snap)
    assert not model.a._forward_hooks and not model.a._forward_pre_hooks


def test_layer_producing_nan_midway_restores_the_model():
    class Blowup(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(11)
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):
            return self.b(torch.log(self.a(x)))  # log of negatives: NaN

    model = Blowup()
    snap = snapshot(model)
    with pytest.raises(ValueError, match="layer 'b' produced NaN or inf"):
        lsuv(model, randn(16, 8), generator=gen(0))
    assert_unchanged(model, snap)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"target_std": "1"}, TypeError, "target_std"),
        ({"target_std": 0.0}, ValueError, "target_std"),
        ({"tol": float("nan")}, ValueError, "tol"),
        ({"max_iters": 0}, ValueError, "max_iters"),
        ({"max_iters": 2.0}, TypeError, "max_iters"),
        ({"num_batches": 0}, ValueError, "num_batches"),
        ({"center": 1}, TypeError, "center"),
        ({"layers": 3}, TypeError, "layers"),
        ({"get_input": "x"}, TypeError, "get_input"),
        ({"generator": 0}, TypeError, "generator"),
    ],
)
def test_bad_arguments(kwargs, exc, msg):
    model = mlp(2, 8)
    snap = snapshot(model)
    with pytest.raises(exc, match=msg):
        lsuv(model, randn(16, 8), **kwargs)
    assert_unchanged(model, snap)
    with pytest.raises(TypeError, match="data"):
        lsuv(model, 3.0)
    with pytest.raises(TypeError, match="model"):
        lsuv("model", randn(16, 8))


# ------------------------------------------------------------------------- distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_model() -> nn.Module:
    torch.manual_seed(12)
    return nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def _dist_data(rank: int) -> torch.Tensor:
    return torch.randn(32, 8, generator=gen(100 + rank)) * (1 + rank)


def _dist_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = _dist_model()
        # different generators per rank: the orthonormal pre-init is broadcast from rank 0
        result = lsuv(model, _dist_data(rank), center=True, generator=gen(rank))
        torch.save(
            {"state": model.state_dict(), "result": result.to_dict()},
            os.path.join(out, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


# fork: children start in milliseconds; spawn re-imports torch in each (10-20 s on a busy box)
_START = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_distributed_all_reduce_gives_identical_weights_on_two_ranks():
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _dist_worker, args=(2, _free_port(), out), nprocs=2, join=True, start_method=_START
        )
        r0, r1 = (torch.load(os.path.join(out, f"rank{r}.pt")) for r in (0, 1))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["result"] == r1["result"]
    assert r0["result"]["world_size"] == 2
    # same as one process on the pooled data with rank 0's generator
    single = _dist_model()
    lsuv(single, torch.cat([_dist_data(0), _dist_data(1)]), center=True, generator=gen(0))
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-6)
