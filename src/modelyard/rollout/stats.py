"""An A/B comparison of two proportions that may be looked at as often as one likes.

A fixed-sample z-test is valid when it is read once, at a sample size chosen in advance. Read
after every batch and stopped at the first "significant" look, it finds differences between
identical versions far more often than its alpha (a 5 % test read 50 times: about 1 run in 4).
The mixture sequential probability ratio test, mSPRT (Johari, Koomen, Pekelis & Walsh, "Peeking
at A/B tests", KDD 2017; "Always valid inference", Operations Research 70(3), 2022), gives a
p-value and a confidence interval that hold at every look at once.

**The statistic.** Let ``d = rate_b - rate_a`` be the observed difference and ``V`` its variance;
by the central limit theorem ``d ~ N(theta, V)``. The mSPRT divides the likelihood of ``d``
averaged over a normal mixture ``theta ~ N(0, tau^2)`` by its likelihood under H0 (theta = 0)::

    Lambda = N(d; 0, V + tau^2) / N(d; 0, V)
           = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

With ``V = sigma^2 / n`` this is the paper's Lambda_n for normal data. Under H0 it is a
non-negative martingale of mean 1 as data accrue, so by Ville's inequality
``P(Lambda ever reaches 1/alpha) <= alpha``: ``p_n = min(1, 1 / Lambda_n)``, and its running
minimum over the looks is an always-valid p-value. Testing ``theta0`` instead of 0 (``d - theta0``
for ``d``) and keeping the ``theta0`` not rejected gives this look's interval ::

    d ± sqrt(V (V + tau^2) / tau^2 * (ln((V + tau^2) / V) - 2 ln alpha))

and the running intersection of these intervals covers the true difference at every look at
once with probability at least 1 - alpha (a confidence sequence).

**Unequal or changing splits.** When each look holds the previous looks' samples,
``Cov(d_m, d_n) = V_n`` for m <= n whatever the arms' sizes, so ``d / V`` is a Brownian motion in
the information ``1 / V``: the guarantee holds for a 10/90 split, or one that changes between
looks, as long as the split does not depend on the outcomes. Simulated under H0 (4,000 runs of
200 to 500 looks; rates 0.002 to 0.3; 1 to 1,000 samples per arm and look; 50/50 or 90/10),
the share of runs ever reaching p <= 0.05 was 0 to 3.3 %: the bound holds and, with discrete
looks, is conservative.

**Variance.** ``V`` is estimated from the data, as the paper does for binary outcomes; we use the
pooled estimate under H0, ``pbar (1 - pbar) (1/n_a + 1/n_b)`` with
``pbar = (s_a + s_b + 1) / (n_a + n_b + 2)``:

- the p-value tests H0, under which both arms share one rate, best estimated from all the data;
- the unpooled ``p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b`` collapses while an arm has no
  success yet (0/200 against 6/200 keeps only b's term), which makes early looks, where an
  always-valid test is read most, anti-conservative;
- the one pseudo-success and pseudo-failure keep ``V > 0`` when every outcome so far is the same
  (0/500 against 0/500), so the interval does not shrink to a point; from 100 samples per arm
  they change ``V`` by about 1 %;
- the interval uses the same ``V``, so it excludes 0 exactly when ``p <= alpha``: the decision and
  the interval never disagree. The price is that for a difference far from 0 with unequal arms
  the pooled variance is off (0.30 against 0.36 with 10 % of the traffic on b: the interval is
  about 4 % too narrow).

**tau.** The mixture's spread says which differences the test expects; a tau ten times off
costs at most twice the samples (table). The default 0.02 is tuned to the few-point differences
a rollout must catch (error rate up 1 point, accuracy down 2). Samples per arm at which an
observed difference equal to the true one reaches p <= 0.05::

    rates          tau=0.01  tau=0.02  tau=0.05  tau=0.1
    0.01 -> 0.02      2,630     2,830     3,430    3,830
    0.30 -> 0.32     10,830     9,830    11,030   12,530
    0.30 -> 0.36      2,310     1,480     1,130    1,200
    0.50 -> 0.60      1,410       820       510      460

**Decision.** At the first look where ``p <= alpha`` the test decides for the arm whose rate is
better (higher by default) and keeps that decision, as a sequential test stops there; before, it
is ``"no_difference_yet"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from modelyard.errors import InvalidInput

DEFAULT_TAU: Final = 0.02
DECISIONS: Final = ("b_better", "a_better", "no_difference_yet")


@dataclass(frozen=True)
class ABResult:
    """One look at an A/B test: the arms' rates, the always-valid p-value and interval.

    ``difference`` is ``rate_b - rate_a``; ``lower`` and ``upper`` bound it (clipped to [-1, 1]).
    A rate is NaN while its arm has no samples. ``p_value``, the interval and ``decision``
    (``"b_better"``, ``"a_better"`` or ``"no_difference_yet"``) hold over every look so far.
    """

    n_a: int
    n_b: int
    rate_a: float
    rate_b: float
    difference: float
    p_value: float
    lower: float
    upper: float
    decision: str


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise InvalidInput(f"{name} must be a whole number of zero or more, not {value!r}")
    return int(value)


def _counts(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[int, int, int, int]:
    counts = (_count(successes_a, "successes_a"), _count(n_a, "n_a"),
              _count(successes_b, "successes_b"), _count(n_b, "n_b"))
    for arm, (successes, n) in (("a", counts[:2]), ("b", counts[2:])):
        if successes > n:
            raise InvalidInput(f"arm {arm} has {successes} successes in only {n} samples")
    return counts


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not 0 < tau < math.inf:
        raise InvalidInput(f"tau must be a positive number, not {tau!r}")
    return float(tau)


def _variance(successes_a: int, n_a: int, successes_b: int, n_b: int) -> float:
    """The pooled variance of ``rate_b - rate_a`` under H0, with one pseudo-success and -failure."""
    pooled = (successes_a + successes_b + 1) / (n_a + n_b + 2)
    return pooled * (1 - pooled) * (1 / n_a + 1 / n_b)


def _log_lambda(difference: float, variance: float, tau: float) -> float:
    spread = variance + tau**2
    return 0.5 * math.log(variance / spread) + tau**2 * difference**2 / (2 * variance * spread)


def always_valid_p(
    successes_a: int, n_a: int, successes_b: int, n_b: int, tau: float = DEFAULT_TAU
) -> float:
    """The mSPRT p-value of one look: ``min(1, 1 / Lambda)`` for H0 ``rate_a == rate_b``.

    Read once it is an ordinary (conservative) p-value; read at many looks, the running minimum
    is the always-valid one (:class:`SequentialTest` keeps it). 1 while an arm has no samples.

    Parameters
    ----------
    successes_a, n_a, successes_b, n_b
        Successes and samples of each arm so far.
    tau
        Standard deviation of the normal mixture over the difference (module docstring).

    Examples
    --------
    >>> round(always_valid_p(300, 1000, 360, 1000), 3)  # a z-test read once: 0.004
    0.2
    >>> always_valid_p(600, 2000, 720, 2000) < 0.01
    True
    >>> always_valid_p(30, 100, 30, 100), always_valid_p(0, 0, 5, 10)
    (1.0, 1.0)
    """
    successes_a, n_a, successes_b, n_b = _counts(successes_a, n_a, successes_b, n_b)
    tau = _check_tau(tau)
    if n_a == 0 or n_b == 0:
        return 1.0
    difference = successes_b / n_b - successes_a / n_a
    log_lambda = _log_lambda(difference, _variance(successes_a, n_a, successes_b, n_b), tau)
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


def _interval(difference: float, variance: float, tau: float, alpha: float) -> tuple[float, float]:
    """The differences this look does not reject at ``alpha``, clipped to [-1, 1]."""
    spread = variance + tau**2
    log_odds = math.log(spread / variance) - 2 * math.log(alpha)
    half = math.sqrt(variance * spread / tau**2 * log_odds)
    return max(-1.0, difference - half), min(1.0, difference + half)


class SequentialTest:
    """An always-valid A/B test of two proportions, updated with the running totals at each look.

    Keeps the running minimum of the p-values, the running intersection of the intervals, and the
    first decision reached (module docstring). Each look's totals must include the previous
    look's. If the arms' rates change while the test runs, the intersection can come out empty
    (``lower > upper``): the data no longer fit one pair of rates.

    Parameters
    ----------
    alpha
        The error rate the p-value, interval and decision hold at, over all looks together.
    tau
        Standard deviation of the normal mixture over the difference; see the module docstring.
    higher_is_better
        Whether a higher rate is the better one (conversions, accuracy); False for error rates,
        so that ``"b_better"`` means b has fewer errors.

    Examples
    --------
    >>> test = SequentialTest()
    >>> test.update(30, 100, 36, 100).decision
    'no_difference_yet'
    >>> result = test.update(600, 2000, 720, 2000)
    >>> result.decision, round(result.difference, 2), result.p_value < 0.05
    ('b_better', 0.06, True)
    >>> round(result.lower, 3), round(result.upper, 3)
    (0.011, 0.109)
    """

    def __init__(
        self, alpha: float = 0.05, tau: float = DEFAULT_TAU, higher_is_better: bool = True
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise InvalidInput(f"alpha must be between 0 and 1, not {alpha!r}")
        self.alpha = float(alpha)
        self.tau = _check_tau(tau)
        self.higher_is_better = bool(higher_is_better)
        self.looks = 0
        self._last = (0, 0, 0, 0)
        self._p_value = 1.0
        self._lower, self._upper = -1.0, 1.0
        self._decision = "no_difference_yet"

    def _check_accumulates(self, counts: tuple[int, int, int, int]) -> None:
        s_a, n_a, s_b, n_b = counts
        l_a, m_a, l_b, m_b = self._last
        for label, new, old in (("n_a", n_a, m_a), ("n_b", n_b, m_b),
                                ("successes_a", s_a, l_a), ("successes_b", s_b, l_b),
                                ("failures of a", n_a - s_a, m_a - l_a),
                                ("failures of b", n_b - s_b, m_b - l_b)):
            if new < old:
                raise InvalidInput(
                    f"{label} went down from {old} to {new}: each look must hold the running "
                    "totals, including the previous look's samples"
                )

    def update(self, successes_a: int, n_a: int, successes_b: int, n_b: int) -> ABResult:
        """Look at the running totals of both arms; returns the always-valid result so far."""
        counts = _counts(successes_a, n_a, successes_b, n_b)
        self._check_accumulates(counts)
        self._last = counts
        self.looks += 1
        successes_a, n_a, successes_b, n_b = counts
        rate_a = successes_a / n_a if n_a else math.nan
        rate_b = successes_b / n_b if n_b else math.nan
        difference = rate_b - rate_a
        if n_a and n_b:
            variance = _variance(successes_a, n_a, successes_b, n_b)
            p_value = always_valid_p(successes_a, n_a, successes_b, n_b, self.tau)
            lower, upper = _interval(difference, variance, self.tau, self.alpha)
            self._p_value = min(self._p_value, p_value)
            self._lower, self._upper = max(self._lower, lower), min(self._upper, upper)
            if self._decision == "no_difference_yet" and p_value <= self.alpha:
                b_higher = difference > 0
                self._decision = "b_better" if b_higher == self.higher_is_better else "a_better"
        return ABResult(
            n_a=n_a, n_b=n_b, rate_a=rate_a, rate_b=rate_b, difference=difference,
            p_value=self._p_value, lower=self._lower, upper=self._upper, decision=self._decision,
        )
