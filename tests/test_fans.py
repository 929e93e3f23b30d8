"""Fans: torch's rule for tensors, layout-aware rules for modules, JAX-style explicit axes."""

import pytest
import torch
from torch import nn

import initscope
from initscope import Fans, fans


@pytest.mark.parametrize(
    "shape", [(7, 3), (16, 8, 3), (32, 16, 3, 3), (8, 4, 2, 3, 5), (5, 0), (1, 1, 1)]
)
def test_tensor_follows_torch_rule(shape):
    t = torch.empty(shape)
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(t)
    rf = 1
    for s in shape[2:]:
        rf *= s
    assert fans(t) == Fans(fan_in, fan_out, rf)


def test_fans_value_object():
    f = Fans(12, 20, 4)
    assert f.fan_avg == 16.0
    assert (f.fan("fan_in"), f.fan("fan_out"), f.fan("fan_avg")) == (12, 20, 16.0)
    assert f.to_dict() == {"fan_in": 12, "fan_out": 20, "receptive_field": 4}
    assert Fans(**f.to_dict()) == f
    with pytest.raises(ValueError, match="fan_in.*fan_out.*fan_avg"):
        f.fan("fan_sum")
    with pytest.raises(ValueError, match="fan_out must be >= 0"):
        Fans(3, -1)
    with pytest.raises(TypeError, match="fan_in must be an int"):
        Fans(3.0, 4)


def test_package_exports():
    assert initscope.fans is fans and initscope.Fans is Fans


@pytest.mark.parametrize("cls", [nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d])
def test_conv_transpose_swaps_torch_rule(cls):
    dims = int(cls.__name__[-2])
    m = cls(8, 4, 3)  # weight (in=8, out=4, 3, ...)
    rf = 3**dims
    assert fans(m) == Fans(8 * rf, 4 * rf, rf)
    t_in, t_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
    assert (t_in, t_out) == (4 * rf, 8 * rf)  # torch's shape rule has them swapped


def test_conv_transpose_grouped():
    m = nn.ConvTranspose2d(8, 6, (3, 2), groups=2)  # weight (8, 3, 3, 2)
    assert tuple(m.weight.shape) == (8, 3, 3, 2)
    # each output sums 8/2 input channels x 6 taps; each input feeds 6/2 outputs x 6 taps
    assert fans(m) == Fans(4 * 6, 3 * 6, 6)


def test_grouped_and_depthwise_conv():
    assert fans(nn.Conv2d(8, 16, 3, groups=4)) == Fans(2 * 9, 4 * 9, 9)
    assert fans(nn.Conv2d(8, 8, 3, groups=8)) == Fans(9, 9, 9)  # depthwise
    assert fans(nn.Conv2d(8, 16, 5, groups=8)) == Fans(25, 2 * 25, 25)  # depth multiplier 2
    assert fans(nn.Conv1d(6, 9, 4, groups=3)) == Fans(2 * 4, 3 * 4, 4)
    assert fans(nn.Conv2d(3, 5, 3)) == fans(nn.Conv2d(3, 5, 3).weight)  # groups=1: torch's rule


def test_multihead_attention_in_proj_per_slice():
    m = nn.MultiheadAttention(16, 4)
    assert tuple(m.in_proj_weight.shape) == (48, 16)
    assert fans(m, "in_proj_weight") == Fans(16, 16)
    assert fans(m, "out_proj.weight") == Fans(16, 16)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32)
    assert fans(layer, "self_attn.in_proj_weight") == Fans(16, 16)
    assert fans(layer, "linear1.weight") == Fans(16, 32)


def test_multihead_attention_separate_kdim_vdim():
    m = nn.MultiheadAttention(16, 4, kdim=8, vdim=6)
    assert fans(m, "q_proj_weight") == Fans(16, 16)
    assert fans(m, "k_proj_weight") == Fans(8, 16)
    assert fans(m, "v_proj_weight") == Fans(6, 16)
    with pytest.raises(TypeError, match="in_proj_weight.*NoneType"):
        fans(m, "in_proj_weight")


def test_embedding_row_is_looked_up():
    assert fans(nn.Embedding(1000, 64)) == Fans(1, 64)
    assert fans(nn.EmbeddingBag(50, 8)) == Fans(1, 8)
    # torch's rule would give fan_in = 64, fan_out = 1000
    assert nn.init._calculate_fan_in_and_fan_out(nn.Embedding(1000, 64).weight) == (64, 1000)


def test_bilinear_is_linear_on_outer_product():
    m = nn.Bilinear(5, 7, 3)  # weight (3, 5, 7)
    assert fans(m) == Fans(35, 3)


def test_recurrent_weights_per_gate():
    lstm = nn.LSTM(10, 20)
    assert tuple(lstm.weight_ih_l0.shape) == (80, 10)
    assert fans(lstm, "weight_ih_l0") == Fans(10, 20)
    assert fans(lstm, "weight_hh_l0") == Fans(20, 20)
    gru = nn.GRU(10, 20, num_layers=2, bidirectional=True)
    assert fans(gru, "weight_ih_l1_reverse") == Fans(40, 20)
    proj = nn.LSTM(10, 20, proj_size=5)
    assert fans(proj, "weight_hh_l0") == Fans(5, 20)
    assert fans(proj, "weight_hr_l0") == Fans(20, 5)  # (proj, hidden): torch's rule
    assert fans(nn.RNN(4, 6), "weight_ih_l0") == Fans(4, 6)
    assert fans(nn.LSTMCell(3, 7), "weight_ih") == Fans(3, 7)
    assert fans(nn.GRUCell(3, 7), "weight_hh") == Fans(7, 7)


def test_explicit_axes_as_jax():
    dense = torch.empty(784, 256)  # JAX layout (in, out)
    assert fans(dense, in_axis=0, out_axis=1) == Fans(784, 256)
    hwio = torch.empty(3, 3, 16, 32)  # JAX conv kernel
    assert fans(hwio, in_axis=-2, out_axis=-1) == Fans(16 * 9, 32 * 9, 9)
    assert fans(torch.empty(3, 4, 5), in_axis=(0, 1), out_axis=2) == Fans(12, 5)
    assert fans(torch.empty(4, 6, 5), in_axis=2) == Fans(5 * 6, 4 * 6, 6)  # out_axis=0 default
    # axes override the layout rules of a module
    assert fans(nn.Embedding(10, 4), in_axis=0, out_axis=1) == Fans(10, 4)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"in_axis": 0}, ValueError, "overlap"),
        ({"in_axis": 3}, ValueError, "in_axis=3 is out of range"),
        ({"out_axis": (1, 1)}, ValueError, "repeats"),
        ({"in_axis": True}, TypeError, "in_axis"),
        ({"out_axis": ()}, TypeError, "out_axis"),
    ],
)
def test_bad_axes(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fans(torch.empty(3, 4, 5), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 dims.*\\(5,\\)"):
        fans(torch.empty(5))
    with pytest.raises(ValueError, match="parameter 'bias'"):
        fans(nn.Linear(3, 4), "bias")
    with pytest.raises(ValueError, match="no attribute 'kernel'.*\\['weight', 'bias'\\]"):
        fans(nn.Linear(3, 4), "kernel")
    with pytest.raises(ValueError, match="name 'nope.weight'"):
        fans(nn.Sequential(nn.Linear(3, 4)), "nope.weight")
    with pytest.raises(TypeError, match="torch.Tensor or an nn.Module"):
        fans([[1.0, 2.0]])
    with pytest.raises(TypeError, match="name must be a str"):
        fans(nn.Linear(3, 4), 0)
    with pytest.raises(ValueError, match="uninitialized"):
        fans(nn.LazyLinear(4))


def test_nested_module_names():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.ConvTranspose2d(8, 4, 2))
    assert fans(model, "0.weight") == Fans(27, 72, 9)
    assert fans(model, "2.weight") == Fans(32, 16, 4)


@pytest.mark.parametrize(
    ("conv", "expected"),
    [
        (nn.Conv2d(3, 768, 16, stride=16), Fans(768, 768, 256)),  # ViT-B/16 patchify stem
        (nn.Conv2d(8, 16, 3, stride=2), Fans(72, 16 * 4, 9)),  # ceil(3 / 2) = 2 per dim
        (nn.Conv2d(8, 16, 3), Fans(72, 144, 9)),  # stride 1: torch's rule
        (nn.Conv2d(8, 16, (4, 3), stride=(2, 3)), Fans(96, 16 * 2, 12)),
        (nn.Conv1d(8, 16, 4, stride=2, groups=2), Fans(16, 8 * 2, 4)),
        (nn.Conv3d(2, 4, 2, stride=2), Fans(16, 4, 8)),
    ],
)
def test_strided_conv_fan_out_counts_the_outputs_an_input_reaches(conv, expected):
    assert fans(conv) == expected
    # the tensor alone keeps torch's rule: the drop-in draws what torch draws
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(conv.weight)
    assert (fans(conv.weight).fan_in, fans(conv.weight).fan_out) == (fan_in, fan_out)


def test_strided_fan_out_is_the_measured_backward_count():
    # fan_out = the number of output terms an input element's gradient sums over, per channel
    conv = nn.Conv2d(1, 5, 3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 17, 17, requires_grad=True)
    conv(x).sum().backward()
    reached = x.grad[0, 0, 2:-2, 2:-2] / 5  # interior pixels: outputs reached per channel
    assert reached.max().item() == fans(conv).fan_out / 5  # ceil(3 / 2)^2 = 4
    assert reached.min().item() == 1.0


def test_vit_stem_plan_std_matches_torchvision():
    stem = nn.Sequential(nn.Conv2d(3, 768, 16, stride=16))
    # a layer whose fans are (768, 768) gets std sqrt(2 / (768 + 768)) = 1 / sqrt(768) = 0.0361,
    # torchvision's ViT stem std sqrt(1 / fan_in); counting fan_out as 768 * 256 gave 0.009
    assert fans(stem[0]).fan_avg == 768
    assert initscope.plan(stem, "xavier")["0.weight"].std == pytest.approx(768**-0.5)
