"""Price forecast models: pure functions of a window's sufficient statistics.

Spark keeps, per (coin, window), only constant-size aggregates of the window's
ticks (:class:`WindowStats`), so state does not grow with the tick rate; every
model below is a function of those aggregates alone. Notation, for the ticks
``(t_i, p_i)`` of a window ending at ``e`` and a horizon ``h`` (target ``e + h``):

* ``x_i = t_i - e`` (seconds, <= 0), ``n`` ticks, ``p_mean`` mean price, ``s`` sample
  standard deviation, ``p_last`` the price of the latest tick;
* ``S = x_last - x_first`` the observed span, ``H = h - x_last`` the distance
  from the last tick to the target;
* OLS fit ``p ~ a + b x`` (``b = cov(x, p) / var(x)``, ``a = p_mean - b x_mean``, the fitted
  price at the window end), with mean squared residual ``MSE``;
* diffusion ``sigma^2`` (price variance per second) estimated as ``15 MSE / S``: for a
  Brownian path observed uniformly over ``S`` seconds, the residual of a straight
  line fit has expected mean square ``sigma^2 S / 15``. This needs ``n >= 3``, ``S > 0``.
* ``q`` the two-sided quantile of the nominal level of a Student t with 5 degrees
  of freedom (1.4759 for 0.80): ``sigma`` is estimated from one window, and for a
  Brownian path that estimate is as noisy as a chi-square with ~5 degrees of
  freedom (its coefficient of variation is 0.64 in simulation, 2 / 0.64^2 = 4.9);
  with the normal quantile the 80 % intervals would cover only ~74 %.

Models (``model_name``: forecast; interval; nominal level):

``moving_average`` (the seeds' baseline)
    ``p_mean``; ``p_mean ± s`` (no interval when ``n < 2``); 0.6827, the mass of ±1 sigma of a
    normal distribution. This interval describes the window's spread, not the
    forecast error, so its real coverage is far below nominal on trending or
    random-walk prices; it is kept because the seeds defined it.
``ewma``
    the exponentially weighted level ``level = sum w_i p_i / sum w_i`` with
    ``w_i = exp(x_i / tau)``, ``tau = half-life / ln 2``; ``level ± q sigma sqrt(H + tau/2)``.
    Under a random walk the level lags the last price by a variance of ``sigma^2 tau / 2``
    and the price then diffuses for ``H`` seconds. It follows the price instead of
    lagging half a window like the mean, and smooths tick noise.
``linear_trend``
    ``a + b h``: the window's drift extrapolated to the target;
    ``± q sigma sqrt(2S/15 + 6H^2/(5S) + H/5 + H)``, the forecast-error variance of an
    OLS line fitted to a Brownian path (fit error at the last tick, slope error
    times ``H``, their covariance, then the diffusion itself). Needs ``n >= 3``.
    On a driftless path its expected error is larger than the naive forecast's
    (about 1.8x the RMSE at the default 180 s window and 300 s horizon); it pays
    off only while a trend persists, and the accuracy report shows which holds.

The naive forecast ("the price stays at ``p_last``") is the yardstick of the
accuracy report; ``p_last`` is stored with every prediction as ``last_price``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import msgspec

MOVING_AVERAGE = "moving_average"
EWMA = "ewma"
LINEAR_TREND = "linear_trend"
MODEL_NAMES: tuple[str, ...] = (MOVING_AVERAGE, EWMA, LINEAR_TREND)

ONE_SIGMA_LEVEL = 2.0 * NormalDist().cdf(1.0) - 1.0
"""0.6827: the nominal level of the seeds' ``mean ± stddev`` interval."""
_BROWNIAN_RESIDUAL = 15.0
"""E[mean squared OLS residual] = sigma^2 S / 15 for Brownian motion over a span S."""
SIGMA_DOF = 5.0
"""Effective degrees of freedom of the one-window diffusion estimate (see the docstring)."""


class WindowStats(msgspec.Struct, frozen=True, kw_only=True):
    """Sufficient statistics of one window's ticks (``x`` = seconds before the window end)."""

    n: int
    mean: float
    var_pop: float
    """Population variance of the prices."""
    x_mean: float
    x_var: float
    """Population variance of ``x``."""
    xp_cov: float
    """Population covariance of ``x`` and price."""
    ewma: float
    """``sum w p / sum w`` with ``w = exp(x / tau)``."""
    last_price: float
    first_x: float
    last_x: float

    @property
    def span_s(self) -> float:
        return self.last_x - self.first_x

    @property
    def std_sample(self) -> float | None:
        """Sample standard deviation (Spark's and the seeds' ``STDDEV``), ``None`` if n < 2."""
        if self.n < 2:
            return None
        return math.sqrt(max(self.var_pop, 0.0) * self.n / (self.n - 1))


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    predicted: float
    low: float | None
    high: float | None
    level: float | None
    """Nominal coverage of ``[low, high]``; ``None`` when there is no interval."""


def ewma_tau(halflife_s: float) -> float:
    """Time constant ``tau`` of weights ``exp(x / tau)`` that halve every ``halflife_s`` seconds."""
    return halflife_s / math.log(2.0)


def z_value(level: float) -> float:
    """Two-sided standard normal quantile: 1.2816 for 0.80, 1.96 for 0.95."""
    return NormalDist().inv_cdf((1.0 + level) / 2.0)


def t_value(level: float, dof: float = SIGMA_DOF) -> float:
    """Two-sided Student t quantile (Cornish-Fisher expansion; 1e-4 accurate for dof >= 3)."""
    z = z_value(level)
    return (
        z
        + (z**3 + z) / (4 * dof)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * dof**4)
    )


def slope(stats: WindowStats) -> float | None:
    """OLS slope of price on time (price units per second), ``None`` if undefined."""
    if stats.n < 2 or stats.x_var <= 0.0:
        return None
    return stats.xp_cov / stats.x_var


def diffusion_variance(stats: WindowStats) -> float | None:
    """Estimated price variance per second ``sigma^2 = 15 MSE / S`` (see the module docstring)."""
    b = slope(stats)
    if b is None or stats.n < 3 or stats.span_s <= 0.0:
        return None
    mse = max(stats.var_pop - stats.xp_cov * b, 0.0)
    return _BROWNIAN_RESIDUAL * mse / stats.span_s


def moving_average(stats: WindowStats) -> Forecast:
    std = stats.std_sample
    if std is None:
        return Forecast(model=MOVING_AVERAGE, predicted=stats.mean, low=None, high=None, level=None)
    return Forecast(
        model=MOVING_AVERAGE,
        predicted=stats.mean,
        low=stats.mean - std,
        high=stats.mean + std,
        level=ONE_SIGMA_LEVEL,
    )


def _interval(model: str, centre: float, variance: float | None, level: float) -> Forecast:
    if variance is None:
        return Forecast(model=model, predicted=centre, low=None, high=None, level=None)
    half = t_value(level) * math.sqrt(max(variance, 0.0))
    return Forecast(
        model=model, predicted=centre, low=centre - half, high=centre + half, level=level
    )


def ewma(stats: WindowStats, *, horizon_s: float, halflife_s: float, level: float) -> Forecast:
    sigma2 = diffusion_variance(stats)
    to_target = horizon_s - stats.last_x
    variance = None if sigma2 is None else sigma2 * (to_target + ewma_tau(halflife_s) / 2.0)
    return _interval(EWMA, stats.ewma, variance, level)


def linear_trend(stats: WindowStats, *, horizon_s: float, level: float) -> Forecast | None:
    b = slope(stats)
    sigma2 = diffusion_variance(stats)
    if b is None or sigma2 is None:
        return None
    intercept = stats.mean - b * stats.x_mean  # fitted price at the window end (x = 0)
    span = stats.span_s
    to_target = horizon_s - stats.last_x
    factor = 2.0 * span / 15.0 + 6.0 * to_target**2 / (5.0 * span) + to_target / 5.0 + to_target
    return _interval(LINEAR_TREND, intercept + b * horizon_s, sigma2 * factor, level)


def forecasts(
    stats: WindowStats, *, horizon_s: float, halflife_s: float, level: float
) -> list[Forecast]:
    """Every model's forecast for one window (a model without enough ticks is left out)."""
    out = [
        moving_average(stats),
        ewma(stats, horizon_s=horizon_s, halflife_s=halflife_s, level=level),
    ]
    trend = linear_trend(stats, horizon_s=horizon_s, level=level)
    if trend is not None:
        out.append(trend)
    return out


def stats_from_ticks(
    ticks: Sequence[tuple[float, float]], *, window_end: float, halflife_s: float
) -> WindowStats:
    """:class:`WindowStats` of ``(epoch seconds, price)`` ticks, computed directly.

    The reference for what the Spark aggregation must produce, and the way the
    benchmark scores models on a replay without Spark.
    """
    if not ticks:
        raise ValueError("a window needs at least one tick")
    n = len(ticks)
    xs = [t - window_end for t, _ in ticks]
    ps = [p for _, p in ticks]
    mean = math.fsum(ps) / n
    x_mean = math.fsum(xs) / n
    tau = ewma_tau(halflife_s)
    weights = [math.exp(x / tau) for x in xs]
    last_x, last_price = max(zip(xs, ps, strict=True))
    return WindowStats(
        n=n,
        mean=mean,
        var_pop=math.fsum((p - mean) ** 2 for p in ps) / n,
        x_mean=x_mean,
        x_var=math.fsum((x - x_mean) ** 2 for x in xs) / n,
        xp_cov=math.fsum((x - x_mean) * (p - mean) for x, p in zip(xs, ps, strict=True)) / n,
        ewma=math.fsum(w * p for w, p in zip(weights, ps, strict=True)) / math.fsum(weights),
        last_price=last_price,
        first_x=min(xs),
        last_x=last_x,
    )
