"""Ensembles of the textbook pricing network: how the initialization shapes their diversity.

Deep ensembles for risk management rest on one claim: different random initializations produce
diverse learned functions, and how useful that diversity is depends on the initialization
distribution spanning distinct basins of attraction. For five initializations (torch's default,
He, initscope's ``auto``, and ``auto`` scaled too small and too large) we train 8 members of the
pricing network on Black-Scholes call prices, all in one vectorized ensemble and on the same
batches, and measure: the accuracy of the ensemble mean, its diversity (Krogh & Vedelsby's
ambiguity, the members' error correlation), the loss barrier on the straight line between
members (Frankle et al. 2020; a barrier > 0 means distinct basins) and the coverage of the
ensemble's 90% prediction intervals in the training range and out of it (volatility above
the training range, where a risk estimate matters most).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from initscope.ensembles import Diversity, Ensemble, diversity, ensemble
from initscope.experiments._common import Claim, Result, generator_or_default, one_thread
from initscope.experiments.pricing import RANGES, PricingNetwork, black_scholes_call, sample_options

TITLE = "Ensembles: diversity from initialization"
#: (label, preset, scale): the initializations compared.
VARIANTS: tuple[tuple[str, str, float], ...] = (
    ("torch default", "torch", 1.0),
    ("He", "he", 1.0),
    ("auto", "auto", 1.0),
    ("auto x 0.25 (too small)", "auto", 0.25),
    ("auto x 4 (too large)", "auto", 4.0),
)
#: Volatility of the out-of-range test set (the training range is ``RANGES["volatility"]``).
OUT_OF_RANGE_VOLATILITY = (0.5, 0.7)
LEVEL = 0.9
#: A barrier counts as a distinct basin above this fraction of the endpoints' mean loss (the
#: 2% tolerance Frankle et al. 2020 use for "linearly connected").
BARRIER_TOLERANCE = 0.02


@dataclasses.dataclass
class EnsemblesResult(Result):
    """Per initialization (``variants``): test MSE of the ensemble mean and of the average
    member, in range and out of range; ambiguity, mean error correlation, spread; loss barriers
    (absolute and relative, between consecutive members) with the loss along each path; 90%
    interval coverage and width in and out of range; mean CKA per layer; training curves."""

    members: int
    hidden: int
    steps: int
    lr: float
    batch_size: int
    n_train: int
    n_test: int
    level: float
    out_of_range_volatility: tuple[float, float]
    variants: list[str]
    eval_steps: np.ndarray
    train_loss: dict[str, np.ndarray]
    ensemble_mse: dict[str, float]
    member_mse: dict[str, float]
    ambiguity: dict[str, float]
    identity_error: dict[str, float]
    error_correlation: dict[str, float]
    spread: dict[str, float]
    barrier: dict[str, float]
    relative_barrier: dict[str, np.ndarray]
    path_alphas: np.ndarray
    path_losses: dict[str, np.ndarray]
    coverage: dict[str, float]
    width: dict[str, float]
    ensemble_mse_out: dict[str, float]
    member_mse_out: dict[str, float]
    spread_out: dict[str, float]
    coverage_out: dict[str, float]
    width_out: dict[str, float]
    mean_cka: dict[str, dict[str, float]]
    target_variance: float
    target_mean: float
    mean_prediction: dict[str, float]
    most_useful: str
    vectorized: bool
    claims: list[Claim]


def _sample(
    n: int, g: torch.Generator, volatility: tuple[float, float] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    if volatility is None:
        return sample_options(n, g)
    x, _ = sample_options(n, g)
    lo, hi = volatility
    x[:, list(RANGES).index("volatility")] = lo + (hi - lo) * torch.rand(
        n, generator=g, dtype=torch.float64
    )
    return x, torch.as_tensor(black_scholes_call(*x.numpy().T))[:, None]


def train(
    ens: Ensemble,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    every: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Adam with cosine decay on the sum of the members' MSE (each member gets exactly the
    gradient of its own loss), one vectorized forward per step; batches drawn from
    ``generator``. Returns the members' mean training loss every ``every`` steps."""
    opt = torch.optim.Adam(ens.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch_size,), generator=generator)
        per_member = F.mse_loss(ens(x[idx]), y[idx].expand(ens.n, -1, -1), reduction="none")
        loss = per_member.mean(dim=(1, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % every == 0:
            curve.append(loss.item() / ens.n)
    return np.asarray(curve)


def _useful(cov_in: dict[str, float], cov_out: dict[str, float], ens_mse: dict[str, float]) -> str:
    """The most useful diversity, for a risk estimate: the init whose prediction intervals cover
    closest to the nominal level, in range and out of range together (the sum of the two gaps);
    ties go to the more accurate ensemble mean."""
    return min(
        cov_in,
        key=lambda v: (abs(cov_in[v] - LEVEL) + abs(cov_out[v] - LEVEL), ens_mse[v]),
    )


def run(*, quick: bool = False, generator: torch.Generator | None = None) -> EnsemblesResult:
    """Run the experiment; ``quick`` trains 4 members of width 32 for 150 steps on less data
    instead of 8 members of width 64 for 600 steps.

    Adam (lr 2e-3, cosine decay), batch 256, inputs standardized with training statistics; every
    initialization sees the same batches.
    """
    g = generator_or_default(generator)
    lr, batch_size = 2e-3, 256
    if quick:
        members, hidden, steps, n_train, n_test = 4, 32, 150, 2048, 512
    else:
        members, hidden, steps, n_train, n_test = 8, 64, 600, 8192, 2048
    every = max(1, steps // 30)
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    batch_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    out: dict[str, dict[str, object]] = {}
    vectorized = True
    with one_thread():
        x_tr, y_tr = _sample(n_train, g)
        x_te, y_te = _sample(n_test, g)
        x_out, y_out = _sample(n_test, g, OUT_OF_RANGE_VOLATILITY)
        mean, std = x_tr.mean(0), x_tr.std(0)
        x_tr, x_te, x_out = ((x - mean) / std for x in (x_tr, x_te, x_out))
        x_tr, y_tr, x_te, y_te, x_out, y_out = (
            t.float() for t in (x_tr, y_tr, x_te, y_te, x_out, y_out)
        )
        for label, preset, scale in VARIANTS:
            ens = ensemble(
                lambda: PricingNetwork(len(RANGES), hidden_dim=hidden),
                members,
                preset=preset,
                scale=scale,
                seed=seed,
            )
            curve = train(
                ens,
                x_tr,
                y_tr,
                steps=steps,
                lr=lr,
                batch_size=batch_size,
                every=every,
                generator=torch.Generator().manual_seed(batch_seed),
            )
            vectorized = vectorized and bool(ens.vectorized)
            with torch.no_grad():
                prediction = float(ens.eval()(x_te).mean())
            d_in = diversity(ens, x_te, y_te, level=LEVEL)
            d_out = diversity(ens, x_out, y_out, level=LEVEL, layers=[], pairs=[(0, 1)], points=3)
            out[label] = {"curve": curve, "in": d_in, "out": d_out, "prediction": prediction}
    moments = (float(y_te.double().var(correction=0)), float(y_te.double().mean()))
    return _result(
        out, members, hidden, steps, lr, batch_size, n_train, n_test, every, vectorized, moments
    )


def _result(
    out: dict[str, dict[str, object]],
    members: int,
    hidden: int,
    steps: int,
    lr: float,
    batch_size: int,
    n_train: int,
    n_test: int,
    every: int,
    vectorized: bool,
    moments: tuple[float, float],
) -> EnsemblesResult:
    variants = list(out)
    target_variance, target_mean = moments
    prediction = {v: float(out[v]["prediction"]) for v in variants}  # type: ignore[arg-type]
    d_in: dict[str, Diversity] = {v: out[v]["in"] for v in variants}  # type: ignore[misc]
    d_out: dict[str, Diversity] = {v: out[v]["out"] for v in variants}  # type: ignore[misc]

    def reg(d: Diversity, field: str) -> float:
        return float(getattr(d.regression, field))

    ens_mse = {v: reg(d_in[v], "ensemble_error") for v in variants}
    mem_mse = {v: reg(d_in[v], "mean_member_error") for v in variants}
    amb = {v: reg(d_in[v], "ambiguity") for v in variants}
    identity = {v: abs(ens_mse[v] - (mem_mse[v] - amb[v])) / mem_mse[v] for v in variants}
    corr = {v: reg(d_in[v], "mean_error_correlation") for v in variants}
    cov = {v: d_in[v].coverage.coverage for v in variants}  # type: ignore[union-attr]
    cov_out = {v: d_out[v].coverage.coverage for v in variants}  # type: ignore[union-attr]
    rel = {v: d_in[v].basins.relative_barriers for v in variants}  # type: ignore[union-attr]
    useful = _useful(cov, cov_out, ens_mse)
    distinct = {v: bool(np.all(rel[v] > BARRIER_TOLERANCE)) for v in variants}
    gain = {v: amb[v] / mem_mse[v] for v in variants}
    spread = {v: reg(d_in[v], "spread") for v in variants}
    spread_out = {v: reg(d_out[v], "spread") for v in variants}
    cka = {v: d_in[v].representations.mean_cka for v in variants}  # type: ignore[union-attr]
    last = [k for k in cka[variants[0]] if k.startswith("backbone")][-1]
    r_cka = {v: cka[v][last] for v in variants}

    def fmt(values: dict[str, float], f: str) -> str:
        return ", ".join(f"{v} {format(values[v], f)}" for v in variants)

    healthy = [v for v, _, scale in VARIANTS if scale == 1.0]
    spreading = [v for v in variants if spread[v] > 0]
    claims = [
        Claim(
            "Krogh & Vedelsby (1995): ensemble error = mean member error - ambiguity, exactly.",
            "largest relative gap over the inits "
            f"{max(identity.values()):.1e} (float64); ambiguity / mean member error: "
            + fmt(gain, ".0%"),
            bool(max(identity.values()) < 1e-9),
        ),
        Claim(
            "Different random initializations produce diverse learned functions: with torch's "
            "default, He and auto inits the ensemble mean beats the average member by at "
            "least 10% of its error.",
            f"test MSE of the ensemble mean vs the average member ({members} members): "
            + ", ".join(f"{v} {ens_mse[v]:.2e} vs {mem_mse[v]:.2e}" for v in variants)
            + "; mean error correlation "
            + fmt(corr, ".2f"),
            bool(all(gain[v] >= 0.10 for v in healthy)),
        ),
        Claim(
            "The quality of the diversity depends on the initialization distribution: the "
            "share of the members' error that the ensemble removes differs by more than a "
            "factor 2 between the five inits.",
            "ambiguity / mean member error: "
            + fmt(gain, ".0%")
            + "; CKA of the last hidden layer between members: "
            + fmt({v: r_cka[v] for v in variants}, ".2f")
            + "".join(
                f"; {v}: the members compute one function (spread 0), mean prediction "
                f"{prediction[v]:.3g} for a mean price of {target_mean:.3g}, test MSE "
                f"{ens_mse[v]:.3g} against a price variance of {target_variance:.3g}"
                for v in variants
                if spread[v] == 0
            ),
            bool(max(gain.values()) > 2 * min(gain.values())),
        ),
        Claim(
            "Distinct basins: the loss on the straight line between two members rises above "
            f"the line between their losses by more than {BARRIER_TOLERANCE:.0%} of their "
            "loss, for every pair and every init.",
            "smallest relative barrier over the consecutive pairs: "
            + fmt({v: float(rel[v].min()) for v in variants}, ".3g")
            + "; distinct basins: "
            + ", ".join(f"{v} {'yes' if distinct[v] else 'no'}" for v in variants),
            bool(all(distinct.values())),
        ),
        Claim(
            "The members disagree more out of the training range (volatility "
            f"{OUT_OF_RANGE_VOLATILITY[0]}-{OUT_OF_RANGE_VOLATILITY[1]}) than in it: the "
            "ensemble flags where it extrapolates (every init whose members differ at all).",
            "spread of the members in / out of range: "
            + ", ".join(f"{v} {spread[v]:.3g} / {spread_out[v]:.3g}" for v in variants),
            bool(spreading and all(spread_out[v] > spread[v] for v in spreading)),
        ),
        Claim(
            f"The {LEVEL:.0%} prediction intervals of the init with the most useful diversity "
            "keep at least 80% of the nominal coverage out of range.",
            "coverage in / out of range: "
            + ", ".join(f"{v} {cov[v]:.0%} / {cov_out[v]:.0%}" for v in variants)
            + f"; most useful (coverage closest to {LEVEL:.0%} in and out of range): {useful}",
            bool(cov_out[useful] >= 0.8 * LEVEL),
        ),
    ]
    alphas = next(iter(d_in.values())).basins.alphas  # type: ignore[union-attr]
    return EnsemblesResult(
        members=members,
        hidden=hidden,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        n_train=n_train,
        n_test=n_test,
        level=LEVEL,
        out_of_range_volatility=OUT_OF_RANGE_VOLATILITY,
        variants=variants,
        eval_steps=np.arange(1, len(out[variants[0]]["curve"]) + 1) * every,  # type: ignore[arg-type]
        train_loss={v: out[v]["curve"] for v in variants},  # type: ignore[misc]
        ensemble_mse=ens_mse,
        member_mse=mem_mse,
        ambiguity=amb,
        identity_error=identity,
        error_correlation=corr,
        spread=spread,
        barrier={v: d_in[v].basins.mean_barrier for v in variants},  # type: ignore[union-attr]
        relative_barrier=rel,
        path_alphas=alphas,
        path_losses={v: d_in[v].basins.losses for v in variants},  # type: ignore[union-attr]
        coverage=cov,
        width={v: d_in[v].coverage.mean_width for v in variants},  # type: ignore[union-attr]
        ensemble_mse_out={v: reg(d_out[v], "ensemble_error") for v in variants},
        member_mse_out={v: reg(d_out[v], "mean_member_error") for v in variants},
        spread_out=spread_out,
        coverage_out=cov_out,
        width_out={v: d_out[v].coverage.mean_width for v in variants},  # type: ignore[union-attr]
        mean_cka=cka,
        target_variance=target_variance,
        target_mean=target_mean,
        mean_prediction=prediction,
        most_useful=useful,
        vectorized=vectorized,
        claims=claims,
    )
