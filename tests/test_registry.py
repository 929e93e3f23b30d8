"""initscope.init's scheme registry: one record per scheme, read by drawing and planning alike."""

import dataclasses
import math

import pytest
import torch

from initscope import init
from initscope.init._fans import Fans, torch_fans
from initscope.init._sampling import truncated_std
from initscope.init.registry import RECORDS, SHORTHANDS, Law, record, scheme_name
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


def _law_std(law: Law) -> float | None:
    """The std of a law with a closed form (None for the matrix families)."""
    a = law.args
    if law.family == "uniform":
        return (a["b"] - a["a"]) / math.sqrt(12)
    if law.family == "normal":
        return a["std"]
    if law.family == "truncated":
        return a["std"] * truncated_std(a["alpha"], a["beta"])
    if law.family == "constant":
        return 0.0
    return None


LAW_CASES = [
    ("he_truncated_normal", {}, (64, 32, 3)),
    ("glorot_truncated_normal", {}, (300, 20)),
    ("variance_scaling", {"scale": 2.0, "distribution": "untruncated_normal"}, (40, 50)),
    ("variance_scaling", {"mode": "fan_geo_avg", "distribution": "normal"}, (40, 50)),
    ("truncated_normal", {"std": 0.3, "lower": -1.0, "upper": 3.0}, (7,)),
    ("kaiming_normal", {"mode": "FAN_OUT", "nonlinearity": "relu"}, (40, 50)),
    ("ones", {}, (3,)),
    ("zeros", {}, (3,)),
]


@pytest.mark.parametrize(("scheme", "kwargs", "shape"), CASES + LAW_CASES)
def test_record_law_has_the_record_std(scheme, kwargs, shape):
    """The law a record gives the counter generator has the std the record gives the plan."""
    rec = record(scheme)
    law = rec.law(kwargs, None, shape)
    fans = torch_fans(shape) if len(shape) >= 2 else Fans(1, 1)
    std, _ = rec.std(kwargs, fans, shape)
    expected = _law_std(law)
    if expected is None:
        assert law.family == rec.name
    else:
        assert expected == pytest.approx(std, rel=1e-12, abs=1e-300)


def test_laws_follow_the_fans_and_the_distribution():
    law = record("glorot_normal").law({}, Fans(3, 5), (8, 8))
    assert law == Law("normal", {"mean": 0.0, "std": math.sqrt(2 / 8)})
    limit = math.sqrt(3.0) * math.sqrt(2 / 16)
    assert record("he_uniform").law({"nonlinearity": "relu"}, None, (4, 16)) == Law(
        "uniform", {"a": -limit, "b": limit}
    )
    for dist, family in [
        ("truncated_normal", "truncated"), ("normal", "normal"),
        ("untruncated_normal", "normal"), ("uniform", "uniform"),
    ]:  # fmt: skip
        law = record("variance_scaling").law({"distribution": dist}, None, (4, 16))
        assert law.family == family
    assert record("trunc_normal").law({"a": 0.5, "b": 0.5}, None, (3,)) == Law(
        "constant", {"value": 0.5}
    )
    with pytest.raises(ValueError, match="distribution must be one of"):
        record("variance_scaling").law({"distribution": "cauchy"}, None, (4, 16))
    with pytest.raises(TypeError, match="gian"):
        record("orthogonal").law({"gian": 2.0}, None, (4, 4))


def test_a_record_without_a_law_is_refused_by_name(monkeypatch):
    from initscope.init import registry
    from initscope.init.counter import counter_spec

    lawless = dataclasses.replace(RECORDS["normal"], draws=None)
    with pytest.raises(ValueError, match="scheme 'normal': no distribution law"):
        lawless.law({}, None, (4, 4))
    monkeypatch.setattr(registry, "RECORDS", {**RECORDS, "normal": lawless})
    with pytest.raises(ValueError, match="scheme 'normal': no distribution law"):
        counter_spec("normal", {}, None, (4, 4))
