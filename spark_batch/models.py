"""Price forecast models: a per-pair state machine over closed 1-minute bars.

No Spark here: the streaming job (:mod:`spark_batch.prediction`) and the offline
backtest (``bench/backtest.py``) run this same code, bar by bar, in time order.

A :class:`Bar` is the summary of one pair's ticks in ``[end - 60 s, end)``: tick
count, exact decimal sums of the prices and of their squares, high, low and close
(the latest tick). When a bar closes, :meth:`Forecaster.advance`

1. resolves the pending forecasts whose target is the bar's end (the actual price
   is the close, the last tick before the target; a forecast whose target bar is
   missing, a feed gap, is dropped unscored) and feeds their errors to the
   calibration and the trailing skill of their model and horizon;
2. updates the volatility estimates with the bar;
3. issues one forecast per model and horizon, stamped with the bar's end: the
   forecast uses only ticks before its own ``issued`` time, and its target is
   ``issued + horizon``.

Volatility, in relative (log-price) terms per minute:

* ``sigma`` (the calibrated models): a HAR-style mix ``0.5 v10 + 0.3 v60 + 0.2 v1440``
  of three EWMAs (half-lives 10 minutes, 1 hour, 1 day, counted in bars) of the
  per-bar variance proxy ``(Parkinson(high, low) + r^2 / k) / 2``, where ``r`` is the
  log return from the previous close and ``k`` the minutes since it. The range uses
  the ticks inside the bar, the return the path between bars; the mix reacts within
  minutes to a burst and still remembers the day.
* ``sigma_plain`` (the Gaussian baseline): the textbook EWMA of ``r^2 / k`` with a
  one-hour half-life.

The scale of a forecast for horizon ``h`` minutes is ``last * sigma * sqrt(h)``.

Models (``model_name``; point forecast; interval):

``random_walk``
    the last price; ``± q * scale`` where ``q`` is the weighted empirical quantile,
    at the nominal level, of the model's own past normalised errors
    ``|actual - predicted| / scale`` for that horizon (split conformal prediction
    with exponentially decaying weights, half-life 1,440 resolved forecasts, kept as
    a histogram of 160 bins of 0.05 plus an overflow bin). Fat tails and a biased
    ``sigma`` are absorbed by ``q``: on real BTC the 80 % multiplier settles near 1.15
    instead of the normal 1.28, the 95 % one near 2.0. Before any error is known the histogram
    holds a prior of weight 30 shaped like ``|N(0, 1)|``, so the first intervals are
    the Gaussian ones and the data takes over within the first hour.
``random_walk_gaussian``
    the last price; ``± z * last * sigma_plain * sqrt(h)``, the plain EWMA-volatility
    Gaussian interval: the baseline the calibrated intervals are measured against.
``ewma``
    the exponentially weighted level of the closes (half-life ``ewma_halflife_s``);
    conformal interval around it, calibrated on its own errors.
``linear_trend``
    the least-squares line through the closes of the last ``trend_window_s``
    extrapolated to the target; conformal interval on its own errors.
``moving_average``
    the prototype's baseline (the seeds' formula): the mean of the ticks of the
    last ``window_s`` seconds, interval ``mean ± stddev`` of those ticks, nominal
    level 0.6827 (one sigma of a normal); no outer interval. The interval describes
    the window's spread, not the forecast error, and covers far less than nominal.

Every forecast carries its model's **trailing skill** for its horizon, ``1 - MAE /
naive MAE`` over the model's resolved forecasts with exponentially decaying
weights (half-life 1,440 forecasts; ``None`` until they weigh 60), negative
included, and a ``preferred`` flag: per horizon, the model with the highest
trailing skill if it is above a margin of 0.01 over at least half a day of
resolved forecasts, else ``random_walk`` (whose point forecast is the
naive one, skill exactly 0). So the model shown first never has a trailing skill
below the naive forecast's.

Determinism: the state is a function of the sequence of bars only (no clock, no
randomness); :meth:`Forecaster.snapshot` / :meth:`Forecaster.restore` round-trip
it exactly (msgpack keeps float64 bits), so a restart continues with the very
same digits.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from itertools import accumulate
from statistics import NormalDist

import msgspec

BAR_S = 60
"""Bar length: forecasts are issued once a minute per pair, on the minute."""
_US = 1_000_000
_BAR_US = BAR_S * _US

RANDOM_WALK = "random_walk"
RANDOM_WALK_GAUSSIAN = "random_walk_gaussian"
EWMA = "ewma"
LINEAR_TREND = "linear_trend"
MOVING_AVERAGE = "moving_average"
MODEL_NAMES: tuple[str, ...] = (
    RANDOM_WALK,
    RANDOM_WALK_GAUSSIAN,
    EWMA,
    LINEAR_TREND,
    MOVING_AVERAGE,
)
"""In order of preference when trailing skills tie."""
CONFORMAL_MODELS: tuple[str, ...] = (RANDOM_WALK, EWMA, LINEAR_TREND)
BASELINE_MODEL = MOVING_AVERAGE
"""The prototype's model, kept for comparison."""
DEFAULT_MODEL = RANDOM_WALK
"""Shown first unless another model has a positive trailing skill."""
MODEL_LABELS: dict[str, str] = {
    RANDOM_WALK: "random walk, calibrated intervals",
    RANDOM_WALK_GAUSSIAN: "random walk, Gaussian EWMA interval (the intervals' yardstick)",
    EWMA: "EWMA level",
    LINEAR_TREND: "linear trend",
    MOVING_AVERAGE: "moving average (the prototype's baseline)",
}
"""What the API and the dashboard call each model."""

ONE_SIGMA_LEVEL = 2.0 * NormalDist().cdf(1.0) - 1.0
"""0.6827: the nominal level of the seeds' ``mean ± stddev`` interval."""
STATE_VERSION = 1
"""Bump when the state layout or the model definitions change: older states are discarded."""

# Spark's decimal arithmetic, mirrored so the backtest's bars equal the stream's:
# a double price becomes decimal(24,10); its square is decimal(38,9) (precision loss).
_PRICE_QUANTUM = Decimal("1e-10")
_SQUARE_QUANTUM = Decimal("1e-9")


class ModelConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The model definitions (fixed by the backtest's figures, not deployment knobs)."""

    horizons_s: tuple[int, ...] = (60, 300, 900)
    interval_level: float = 0.8
    outer_interval_level: float = 0.95
    window_s: int = 180
    """The seeds' moving-average window."""
    ewma_halflife_s: float = 30.0
    trend_window_s: int = 900
    vol_halflives_bars: tuple[float, ...] = (10.0, 60.0, 1440.0)
    vol_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    plain_vol_halflife_bars: float = 60.0
    calibration_halflife: float = 1440.0
    """Half-life of the conformal weights, in resolved forecasts."""
    score_bins: int = 160
    score_bin_width: float = 0.05
    prior_weight: float = 30.0
    skill_halflife: float = 1440.0
    skill_min_weight: float = 60.0
    prefer_min_weight: float = 720.0
    """... and only once that skill weighs half a day of forecasts (early skills are noise)."""
    prefer_margin: float = 0.01
    """A model is shown first instead of ``random_walk`` only with a trailing skill above this:
    smaller edges are within the noise of a day's MAE ratio (about ±0.005 on real BTC)."""
    min_sigma: float = 1e-6
    """Floor of the relative volatility per minute (a price that never moves)."""

    def __post_init__(self) -> None:
        if not self.horizons_s or any(h <= 0 or h % BAR_S for h in self.horizons_s):
            raise ValueError(f"horizons must be positive multiples of {BAR_S} s")
        if self.window_s <= 0 or self.window_s % BAR_S or self.trend_window_s < 3 * BAR_S:
            raise ValueError("window_s must be a multiple of 60 s, trend_window_s >= 180 s")
        if len(self.vol_halflives_bars) != len(self.vol_weights):
            raise ValueError("one weight per volatility half-life")
        for level in (self.interval_level, self.outer_interval_level):
            if not 0.0 < level < 1.0:
                raise ValueError(f"interval level {level} must be in (0, 1)")


class Bar(msgspec.Struct, frozen=True, array_like=True):
    """One pair's ticks in ``[end - 60 s, end)``."""

    end_us: int
    n: int
    sum_p: Decimal
    """Exact sum of the prices as decimal(24,10)."""
    sum_pp: Decimal
    """Exact sum of the squared prices, each rounded to 9 places as Spark does."""
    high: float
    low: float
    close: float
    """Price of the latest tick (equal times: the higher price)."""


class Forecast(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    horizon_s: int
    issued_us: int
    """The bar end: the forecast uses only ticks before this time."""
    target_us: int
    window_start_us: int
    """Start of the oldest bar the point forecast read directly."""
    predicted: float
    low: float | None
    high: float | None
    level: float | None
    outer_low: float | None
    outer_high: float | None
    outer_level: float | None
    last_price: float
    trailing_skill: float | None
    preferred: bool


class _Pending(msgspec.Struct, array_like=True):
    key: str
    """``model/horizon``."""
    conformal: bool
    predicted: float
    scale: float
    last: float


class _Skill(msgspec.Struct, array_like=True):
    model_abs: float = 0.0
    naive_abs: float = 0.0
    weight: float = 0.0


class _Histogram(msgspec.Struct, array_like=True):
    """Weighted score histogram with lazy decay: the newest score weighs ``unit``.

    Instead of multiplying every bin by the decay at each new score, the new score's
    weight grows by ``1 / decay``; only ratios matter, and the bins are rescaled
    when ``unit`` gets large. Same arithmetic in every run, so just as deterministic.
    """

    bins: list[float]
    """Weights of bins ``[k w, (k+1) w)``, the overflow bin last."""
    unit: float = 1.0

    def add(self, k: int, decay: float) -> None:
        self.unit /= decay
        self.bins[k] += self.unit
        if self.unit > _RESCALE:
            self.bins = [b / self.unit for b in self.bins]
            self.unit = 1.0


_RESCALE = 1e100


class _MaBar(msgspec.Struct, array_like=True):
    end_us: int
    n: int
    sum_p: Decimal
    sum_pp: Decimal


class PairState(msgspec.Struct, kw_only=True):
    """Everything the models remember about one pair (a few kB)."""

    version: int = STATE_VERSION
    last_end_us: int | None = None
    last_close: float | None = None
    vol: list[float] = msgspec.field(default_factory=list)
    plain_vol: float | None = None
    level: float | None = None
    closes: list[tuple[int, float]] = msgspec.field(default_factory=list)
    ma_bars: list[_MaBar] = msgspec.field(default_factory=list)
    scores: dict[str, _Histogram] = msgspec.field(default_factory=dict)
    """Conformal histogram per ``model/horizon``."""
    skill: dict[str, _Skill] = msgspec.field(default_factory=dict)
    pending: dict[int, list[_Pending]] = msgspec.field(default_factory=dict)
    """Issued forecasts waiting for their target bar, by target time (µs)."""


_NORMAL = NormalDist()
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PairState)
_LN2_4 = 4.0 * math.log(2.0)


def z_value(level: float) -> float:
    """Two-sided standard normal quantile: 1.2816 for 0.80, 1.96 for 0.95."""
    return _NORMAL.inv_cdf((1.0 + level) / 2.0)


def _key(model: str, horizon_s: int) -> str:
    return f"{model}/{horizon_s}"


def _decay(halflife: float) -> float:
    return float(0.5 ** (1.0 / halflife))


def half_normal_prior(cfg: ModelConfig) -> list[float]:
    """Bin weights of ``|N(0, 1)|`` with total ``prior_weight`` (overflow bin last)."""
    w = cfg.score_bin_width
    cdf = [2.0 * _NORMAL.cdf(k * w) - 1.0 for k in range(cfg.score_bins + 1)]
    masses = [cdf[k + 1] - cdf[k] for k in range(cfg.score_bins)] + [1.0 - cdf[-1]]
    return [cfg.prior_weight * m for m in masses]


def weighted_quantiles(
    bins: Sequence[float], levels: Sequence[float], width: float, unit: float = 1.0
) -> list[float]:
    """Quantiles of a score histogram, linear inside a bin.

    The conformal finite-sample correction counts the forecast being made as one
    more score (of weight ``unit``, the newest's): the quantile is taken at
    ``level * (total + unit)``.
    """
    cum = list(accumulate(bins))
    total = cum[-1]
    out = []
    for level in levels:
        target = min(total, level * (total + unit))
        k = min(bisect_left(cum, target), len(bins) - 1)
        below = cum[k - 1] if k else 0.0
        frac = (target - below) / bins[k] if bins[k] > 0.0 else 0.0
        out.append((k + frac) * width)
    return out


def decimal_price(price: float) -> Decimal:
    """A double price as Spark's ``CAST(price AS DECIMAL(24,10))``."""
    return Decimal(repr(price)).quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def bar_from_ticks(ticks: Iterable[tuple[int, float]], end_us: int) -> Bar:
    """The :class:`Bar` of ``(event time in µs, price)`` ticks, as the Spark aggregate builds it."""
    items = list(ticks)
    if not items:
        raise ValueError("a bar needs at least one tick")
    prices = [decimal_price(p) for _, p in items]
    with localcontext() as ctx:
        ctx.prec = 80
        sum_p = sum(prices, Decimal(0))
        sum_pp = sum(
            ((p * p).quantize(_SQUARE_QUANTUM, rounding=ROUND_HALF_UP) for p in prices),
            Decimal(0),
        )
    return Bar(
        end_us=end_us,
        n=len(items),
        sum_p=sum_p,
        sum_pp=sum_pp,
        high=max(p for _, p in items),
        low=min(p for _, p in items),
        close=max(items)[1],
    )


def bars_from_ticks(ticks: Iterable[tuple[int, float]]) -> list[Bar]:
    """Every minute's :class:`Bar` of a tick stream (µs epochs), in time order."""
    by_end: dict[int, list[tuple[int, float]]] = {}
    for t, p in ticks:
        by_end.setdefault((t // _BAR_US + 1) * _BAR_US, []).append((t, p))
    return [bar_from_ticks(by_end[end], end) for end in sorted(by_end)]


def _ma(bars: Sequence[_MaBar]) -> tuple[float, float | None]:
    """Mean and sample standard deviation of the ticks of ``bars`` (exact decimals first)."""
    with localcontext() as ctx:
        ctx.prec = 80
        n = sum(b.n for b in bars)
        s = sum((b.sum_p for b in bars), Decimal(0))
        ss = sum((b.sum_pp for b in bars), Decimal(0))
        mean = s / n
        var_pop = ss / n - mean * mean
    if n < 2:
        return float(mean), None
    return float(mean), math.sqrt(max(float(var_pop), 0.0) * n / (n - 1))


def _trend(closes: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares line through ``(seconds after the last close, close)``: (level, slope).

    ``None`` with fewer than 3 points.
    """
    if len(closes) < 3:
        return None
    origin = closes[-1][0]
    xs = [(t - origin) / _US for t, _ in closes]
    ps = [p for _, p in closes]
    n = len(xs)
    x_mean = math.fsum(xs) / n
    p_mean = math.fsum(ps) / n
    sxx = math.fsum((x - x_mean) ** 2 for x in xs)
    sxp = math.fsum((x - x_mean) * (p - p_mean) for x, p in zip(xs, ps, strict=True))
    slope = sxp / sxx
    return p_mean - slope * x_mean, slope


class Forecaster:
    """The state machine of one pair: feed closed bars in time order to :meth:`advance`."""

    def __init__(self, cfg: ModelConfig, state: PairState | None = None) -> None:
        self.cfg = cfg
        self.state = PairState() if state is None else state
        self._vol_decay = [_decay(h) for h in cfg.vol_halflives_bars]
        self._plain_decay = _decay(cfg.plain_vol_halflife_bars)
        self._score_decay = _decay(cfg.calibration_halflife)
        self._skill_decay = _decay(cfg.skill_halflife)
        self._z = {lv: z_value(lv) for lv in (cfg.interval_level, cfg.outer_interval_level)}
        self._prior = half_normal_prior(cfg)
        self._overflow_bin = cfg.score_bins

    # -- persistence -------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return _ENCODER.encode(self.state)

    @classmethod
    def restore(cls, cfg: ModelConfig, blob: bytes | None) -> Forecaster:
        """The forecaster of a stored snapshot; a fresh one if none or of another version."""
        if blob is None:
            return cls(cfg)
        state = _DECODER.decode(blob)
        if state.version != STATE_VERSION:
            return cls(cfg)
        return cls(cfg, state)

    @property
    def last_end_us(self) -> int | None:
        return self.state.last_end_us

    # -- the step ----------------------------------------------------------------------

    def advance(self, bar: Bar) -> list[Forecast]:
        """Apply one closed bar; the forecasts issued at its end (none for an old bar)."""
        s = self.state
        if s.last_end_us is not None and bar.end_us <= s.last_end_us:
            return []  # already applied (a replayed micro-batch)
        self._resolve(bar)
        previous = s.last_close
        self._update(bar)
        if previous is None:
            return []  # the first bar only starts the state: no return to learn from yet
        return self._issue(bar)

    def _resolve(self, bar: Bar) -> None:
        s, cfg = self.state, self.cfg
        # Targets before this bar had no bar of their own (no tick that minute): unscored.
        for target in [t for t in s.pending if t < bar.end_us]:
            del s.pending[target]
        actual = bar.close
        d = self._skill_decay
        for p in s.pending.pop(bar.end_us, []):
            if p.conformal:
                hist = s.scores.get(p.key)
                if hist is None:
                    hist = s.scores[p.key] = _Histogram(list(self._prior))
                k = min(int(abs(actual - p.predicted) / p.scale / cfg.score_bin_width),
                        self._overflow_bin)  # fmt: skip
                hist.add(k, self._score_decay)
            sk = s.skill.get(p.key) or _Skill()
            s.skill[p.key] = _Skill(
                model_abs=sk.model_abs * d + abs(actual - p.predicted),
                naive_abs=sk.naive_abs * d + abs(actual - p.last),
                weight=sk.weight * d + 1.0,
            )

    def _update(self, bar: Bar) -> None:
        s, cfg = self.state, self.cfg
        proxy = math.log(bar.high / bar.low) ** 2 / _LN2_4
        if s.last_close is not None and s.last_end_us is not None:
            minutes = (bar.end_us - s.last_end_us) / _BAR_US
            r2 = math.log(bar.close / s.last_close) ** 2 / minutes
            proxy = 0.5 * (proxy + r2)
            s.plain_vol = (
                r2
                if s.plain_vol is None
                else self._plain_decay * s.plain_vol + (1.0 - self._plain_decay) * r2
            )
        if not s.vol:
            s.vol = [proxy for _ in self._vol_decay]
        else:
            s.vol = [d * v + (1.0 - d) * proxy for d, v in zip(self._vol_decay, s.vol, strict=True)]
        if s.level is None or s.last_end_us is None:
            s.level = bar.close
        else:
            keep = 0.5 ** ((bar.end_us - s.last_end_us) / _US / cfg.ewma_halflife_s)
            s.level = keep * s.level + (1.0 - keep) * bar.close
        trend_from = bar.end_us - cfg.trend_window_s * _US
        s.closes = [c for c in s.closes if c[0] > trend_from] + [(bar.end_us, bar.close)]
        ma_from = bar.end_us - cfg.window_s * _US
        s.ma_bars = [b for b in s.ma_bars if b.end_us > ma_from] + [
            _MaBar(bar.end_us, bar.n, bar.sum_p, bar.sum_pp)
        ]
        s.last_end_us = bar.end_us
        s.last_close = bar.close

    def _sigma(self) -> float:
        v = math.fsum(w * x for w, x in zip(self.cfg.vol_weights, self.state.vol, strict=True))
        return max(math.sqrt(max(v, 0.0)), self.cfg.min_sigma)

    def _preferable(self, model: str, horizon_s: int, skill: float | None) -> bool:
        sk = self.state.skill.get(_key(model, horizon_s))
        return (
            skill is not None
            and skill > self.cfg.prefer_margin
            and sk is not None
            and sk.weight >= self.cfg.prefer_min_weight
        )

    def trailing_skill(self, model: str, horizon_s: int) -> float | None:
        sk = self.state.skill.get(_key(model, horizon_s))
        if sk is None or sk.weight < self.cfg.skill_min_weight or sk.naive_abs <= 0.0:
            return None
        return 1.0 - sk.model_abs / sk.naive_abs

    def _quantiles(self, model: str, horizon_s: int) -> tuple[float, float]:
        cfg = self.cfg
        hist = self.state.scores.get(_key(model, horizon_s))
        bins, unit = (self._prior, 1.0) if hist is None else (hist.bins, hist.unit)
        q, oq = weighted_quantiles(
            bins, (cfg.interval_level, cfg.outer_interval_level), cfg.score_bin_width, unit
        )
        return q, oq

    def _issue(self, bar: Bar) -> list[Forecast]:
        s, cfg = self.state, self.cfg
        assert s.level is not None
        last = bar.close
        sigma = self._sigma()
        plain = max(math.sqrt(s.plain_vol or 0.0), cfg.min_sigma)
        bar_start = bar.end_us - _BAR_US
        mean, std = _ma(s.ma_bars)
        ma_start = min(b.end_us for b in s.ma_bars) - _BAR_US
        line = _trend(s.closes)
        trend_start = s.closes[0][0] - _BAR_US
        lv, olv = cfg.interval_level, cfg.outer_interval_level
        out: list[Forecast] = []
        for h in cfg.horizons_s:
            target = bar.end_us + h * _US
            root = math.sqrt(h / BAR_S)
            pending = s.pending.setdefault(target, [])
            scale = last * sigma * root
            rows: list[tuple[str, float, int, tuple[float, float, float, float]]] = []
            for model, point, start in (
                (RANDOM_WALK, last, bar_start),
                (EWMA, s.level, bar_start),
                (LINEAR_TREND, None if line is None else line[0] + line[1] * h, trend_start),
            ):
                if point is None:
                    continue
                q, oq = self._quantiles(model, h)
                half, outer = q * scale, oq * scale
                band = (point - half, point + half, point - outer, point + outer)
                rows.append((model, point, start, band))
            g = last * plain * root
            z, oz = self._z[lv], self._z[olv]
            band = (last - z * g, last + z * g, last - oz * g, last + oz * g)
            rows.append((RANDOM_WALK_GAUSSIAN, last, bar_start, band))
            skills = {m: self.trailing_skill(m, h) for m in MODEL_NAMES}
            preferred = max(
                (m for m in MODEL_NAMES if self._preferable(m, h, skills[m])),
                key=lambda m: skills[m] or 0.0,
                default=DEFAULT_MODEL,
            )
            for model, point, start, band in rows:
                out.append(
                    Forecast(
                        model=model, horizon_s=h, issued_us=bar.end_us, target_us=target,
                        window_start_us=start, predicted=point, low=band[0], high=band[1],
                        level=lv, outer_low=band[2], outer_high=band[3], outer_level=olv,
                        last_price=last, trailing_skill=skills[model],
                        preferred=model == preferred,
                    )
                )  # fmt: skip
                pending.append(
                    _Pending(_key(model, h), model in CONFORMAL_MODELS, point, scale, last)
                )
            out.append(
                Forecast(
                    model=MOVING_AVERAGE, horizon_s=h, issued_us=bar.end_us, target_us=target,
                    window_start_us=ma_start, predicted=mean,
                    low=None if std is None else mean - std,
                    high=None if std is None else mean + std,
                    level=None if std is None else ONE_SIGMA_LEVEL,
                    outer_low=None, outer_high=None, outer_level=None, last_price=last,
                    trailing_skill=skills[MOVING_AVERAGE],
                    preferred=preferred == MOVING_AVERAGE,
                )
            )  # fmt: skip
            pending.append(_Pending(_key(MOVING_AVERAGE, h), False, mean, scale, last))
        return out


def run(bars: Iterable[Bar], cfg: ModelConfig, state: PairState | None = None) -> list[Forecast]:
    """Every forecast a fresh (or given) state issues over ``bars`` (the backtest's loop)."""
    forecaster = Forecaster(cfg, state)
    out: list[Forecast] = []
    for bar in bars:
        out.extend(forecaster.advance(bar))
    return out
