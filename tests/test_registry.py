"""initscope.init's scheme registry: one record per scheme, read by drawing and planning alike."""

import math

import pytest
import torch

from initscope import init
from initscope.init._fans import torch_fans
from initscope.init.registry import RECORDS, SHORTHANDS, record, scheme_name
from initscope.policy._choice import accepted, applicable

# (scheme, kwargs, shape): the record's std against the std of a large draw
CASES = [
    ("uniform", {"a": -1.0, "b": 3.0}, (400, 500)),
    ("normal", {"mean": 1.0, "std": 0.3}, (400, 500)),
    ("trunc_normal", {"mean": 0.5, "std": 1.0, "a": -1.0, "b": 1.0}, (400, 500)),
    ("truncated_normal", {"std": 0.2}, (400, 500)),
    ("xavier_uniform", {"gain": 1.7}, (400, 500)),
    ("glorot_normal", {}, (300, 20, 3)),
    ("kaiming_uniform", {"a": 0.3, "mode": "fan_out"}, (400, 500)),
    ("he_normal", {"nonlinearity": "relu"}, (64, 32, 3, 3)),
    ("lecun_normal", {}, (400, 500)),
    ("lecun_uniform", {}, (400, 500)),
    ("variance_scaling", {"scale": 3.0, "mode": "fan_avg", "distribution": "uniform"}, (400, 500)),
    ("orthogonal", {"gain": 2.0}, (300, 700)),
    ("delta_orthogonal", {"gain": 1.5}, (256, 128, 3, 3)),
    ("sparse", {"sparsity": 0.3, "std": 0.5}, (400, 500)),
    ("eye", {}, (30, 50)),
    ("dirac", {"groups": 2}, (16, 4, 3, 3)),
    ("constant", {"val": 0.25}, (10, 10)),
]


@pytest.mark.parametrize(("scheme", "kwargs", "shape"), CASES)
def test_record_std_is_what_the_function_draws(scheme, kwargs, shape):
    rec = record(scheme)
    t = torch.empty(shape, dtype=torch.float64)
    extra = {"generator": torch.Generator().manual_seed(0)} if "generator" in rec.params else {}
    rec.fn(t, **kwargs, **extra)
    std, formula = rec.std(kwargs, torch_fans(shape), shape)
    assert formula
    assert t.std(correction=0).item() == pytest.approx(std, rel=0.01, abs=1e-12)


def test_every_name_has_one_record():
    assert set(init.SCHEMES) == set(RECORDS)
    for name, rec in RECORDS.items():
        assert init.SCHEMES[name] is rec.fn is init.get_scheme(name)
        assert name == rec.name or name in rec.aliases
    assert SHORTHANDS == {
        "he": "kaiming_normal", "xavier": "xavier_normal", "glorot": "xavier_normal",
        "lecun": "lecun_normal",
    }  # fmt: skip
    assert scheme_name("he_") == "kaiming_normal"
    assert scheme_name("glorot_uniform") == "glorot_uniform"
    with pytest.raises(ValueError, match="unknown scheme 'hee'; valid names: he, "):
        scheme_name("hee")
    with pytest.raises(ValueError, match="unknown scheme name 'he'"):
        init.get_scheme("he")  # shorthands are for plans, get_scheme takes function names


def test_ranks_and_parameters_come_from_the_record():
    assert applicable("normal", 1) and applicable("zeros", 0)
    assert applicable("eye", 2) and not applicable("eye", 3)
    assert applicable("dirac", 4) and not applicable("dirac", 2) and not applicable("dirac", 6)
    assert applicable("he", 2) and not applicable("kaiming_normal", 1)
    assert "fans" in accepted("xavier") and "nonlinearity" in accepted("he_uniform")
    fan_based = {n for n, r in RECORDS.items() if r.fan_based}
    assert fan_based == {
        "xavier_uniform", "xavier_normal", "glorot_uniform", "glorot_normal", "kaiming_uniform",
        "kaiming_normal", "he_uniform", "he_normal", "lecun_normal", "lecun_uniform",
        "variance_scaling", "he_truncated_normal", "glorot_truncated_normal",
    }  # fmt: skip
    std, formula = record("he").std({"nonlinearity": "relu"}, torch_fans((4, 8)), (4, 8))
    assert std == math.sqrt(2.0) / math.sqrt(8) and formula == "Var = 2 / fan_in = 2/8"
