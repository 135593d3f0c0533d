"""The simulated customer world: plans and prices, behaviour rates, latent traits and the true churn hazard.

The simulated world
-------------------
* **Plans** ``basic`` (~30/month), ``standard`` (~60), ``premium`` (~95); every
  customer pays their plan's list price times a personal jitter.
* **Latent traits**, drawn from the seeded generator when a customer joins:
  usage level and usage frequency, support propensity, payment-failure
  propensity (cut by autopay), a tendency to disengage (once it starts, usage
  decays exponentially and the customer goes quiet) and a frailty (an
  unobserved additive term on the churn logit).
* **Population.** ``n_customers`` existing customers have signed up 0–48 months
  before ``start``; their backdated signups open the stream, sorted by time.
  Every existing customer is active on day 0 (one usage event), because the
  stream carries no history before ``start``: otherwise the silence since a
  years-old signup would look like disengagement. New customers join every day
  at a rate that pulls the active population back towards ``n_customers``.
* **A day** for each active customer: usage on most days, occasional support
  calls, the monthly payment on the signup day of month (``failed`` with the
  customer's failure propensity), rare plan changes and autopay toggles. At the
  start of each day (= the end of the previous one) every active customer
  churns with probability ``true_hazard(id, feature_values(state, t), t)``;
  a churner emits one ``account_closed`` at a random time that day and nothing
  after. Within a day events get random whole-second times; the whole stream is
  in non-decreasing ``ts`` order, ties broken by generation order.
* **History artefacts.** The stream carries no activity before ``start``, so
  the windowed features (support 30 days, usage 60 days, failed payments 90
  days) fill up during the first weeks and the churn rate settles after ~60
  simulated days. Training snapshots should start there; the default onset
  (day 90) comes after it.
* **Calibration** (default config, snapshots on days 60–150): about 9% of
  active customers close within 30 days, and the oracle's 30-day score ranks
  them with a ROC AUC of about 0.83.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# --- plans ----------------------------------------------------------------------

PLAN_PRICES: dict[str, float] = {"basic": 30.0, "standard": 60.0, "premium": 95.0}
PLAN_MIX = (0.40, 0.40, 0.20)  # share of signups per plan in PLAN_PRICES order
FLEX_PLAN = "flex"
FLEX_PRICE = 45.0
_PLANS: tuple[str, ...] = (*PLAN_PRICES, FLEX_PLAN)  # plan codes index this tuple
_FLEX = len(PLAN_PRICES)
_PRICES = np.array([*PLAN_PRICES.values(), FLEX_PRICE])

# --- behaviour (per-day probabilities unless stated) ----------------------------

MAX_TENURE_MONTHS = 48.0  # backdated signups of the initial population
PRIOR_DISENGAGEMENT_DAYS = 60  # look-back for initial customers already disengaging
AUTOPAY_SHARE = 0.55
CHARGE_JITTER_SD = 0.08  # log-normal sd of the personal price multiplier
USAGE_NOISE_SD = 0.4  # log-normal sd of one day's usage around the customer level
SUPPORT_WHEN_DISENGAGED = 1.5  # extra support rate at full disengagement (relative)
AUTOPAY_FAILURE_FACTOR = 0.3  # autopay cuts the payment-failure propensity
PLAN_CHANGE_RATE = 0.0015
AUTOPAY_TOGGLE_RATE = 0.0008
JOIN_RATE = 0.003  # new customers per day, as a share of n_customers ...
JOIN_RESTORE = 0.1  # ... plus this share of the gap to n_customers
SUPPORT_REASONS = ("billing", "technical", "account", "cancellation_inquiry")


@dataclass(frozen=True)
class Hazard:
    """Coefficients of the daily churn logit; ``sigmoid(logit)`` is the daily probability.

    ``logit = base + short_tenure·exp(-tenure/tenure_scale)
    + charges·(monthly_charges - charges_ref) + autopay·has_autopay
    + support_call·support_calls_30d + failed_payment·failed_payments_90d
    + silence·min(days_since_last_event, silence_cap)
    + usage_decline·max(0, -usage_trend) + plan effect + frailty``.
    Under ``concept_flip`` after onset the autopay term is ``-autopay·has_autopay``.
    """

    base: float = -7.6
    short_tenure: float = 1.6
    tenure_scale: float = 6.0
    charges: float = 0.02
    charges_ref: float = 60.0
    autopay: float = -0.8
    support_call: float = 0.35
    failed_payment: float = 0.7
    silence: float = 0.25
    silence_cap: float = 30.0
    usage_decline: float = 0.6
    premium: float = -0.5
    flex: float = 0.6
    frailty_sd: float = 0.5

    def logit(self, cols: Mapping[str, np.ndarray], frailty: np.ndarray, flipped: bool | np.ndarray) -> np.ndarray:
        """The logit for columns as built by :func:`_columns` (vectorized; ``flipped`` per row or for all)."""
        autopay = np.where(flipped, -self.autopay, self.autopay)
        return (
            self.base
            + self.short_tenure * np.exp(-cols["tenure_months"] / self.tenure_scale)
            + self.charges * (cols["monthly_charges"] - self.charges_ref)
            + autopay * cols["has_autopay"]
            + self.support_call * cols["support_calls_30d"]
            + self.failed_payment * cols["failed_payments_90d"]
            + self.silence * np.minimum(cols["days_since_last_event"], self.silence_cap)
            + self.usage_decline * np.maximum(0.0, -cols["usage_trend"])
            + self.premium * cols["premium"]
            + self.flex * cols["flex"]
            + frailty
        )


HAZARD = Hazard()

_NUMERIC = (
    "tenure_months",
    "monthly_charges",
    "has_autopay",
    "support_calls_30d",
    "failed_payments_90d",
    "days_since_last_event",
    "usage_trend",
)


def _columns(values: list[Mapping[str, float | int | str]]) -> dict[str, np.ndarray]:
    """Feature dicts (from ``feature_values``) as float columns, plus plan indicators."""
    cols = {name: np.array([v[name] for v in values], dtype=float) for name in _NUMERIC}
    plans = [v["plan"] for v in values]
    cols["premium"] = np.array([p == "premium" for p in plans], dtype=float)
    cols["flex"] = np.array([p == FLEX_PLAN for p in plans], dtype=float)
    return cols


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Traits:
    """Latent per-customer traits in growable numpy columns (index = customer number)."""

    FIELDS = (
        "level",  # typical usage amount on an active day
        "p_use",  # probability of using the service on a given day while engaged
        "support",  # daily support-call rate
        "fail",  # payment-failure propensity without autopay
        "tendency",  # daily probability of starting to disengage
        "tau",  # e-folding time (days) of usage once disengaging
        "frailty",  # unobserved additive term on the churn logit
        "jitter",  # personal price multiplier
        "bdom",  # billing day of month
        "dis_start",  # day disengagement started, inf if not
    )

    def __init__(self) -> None:
        self.n = 0
        for name in self.FIELDS:
            setattr(self, name, np.empty(0))

    def add(self, rng: np.random.Generator, k: int, bdom: np.ndarray) -> None:
        """Draw the traits of ``k`` new customers, in a fixed order."""
        new = {
            "level": rng.lognormal(math.log(4.0), 0.6, k),
            "p_use": rng.beta(6.0, 1.5, k),
            "support": rng.gamma(1.0, 0.015, k),
            "fail": rng.beta(1.2, 18.0, k),
            "tendency": rng.beta(0.6, 150.0, k),
            "tau": rng.uniform(7.0, 30.0, k),
            "frailty": rng.normal(0.0, HAZARD.frailty_sd, k),
            "jitter": rng.lognormal(0.0, CHARGE_JITTER_SD, k),
            "bdom": bdom.astype(float),
            "dis_start": np.full(k, np.inf),
        }
        for name, column in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), column]))
        self.n += k
