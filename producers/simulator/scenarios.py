"""The drift scenarios and drift shapes (their names and effect sizes); a scenario starts at ``SimConfig.onset_day``.

Scenarios (from ``onset_day`` on)
---------------------------------
``price_hike``
    On the onset day every active customer gets a ``plan_changed`` with the same
    plan and charges raised 30%; later signups and plan changes use the raised
    price list. The hazard rises through the ordinary charges coefficient.
``support_surge``
    The daily support-call rate is multiplied by 4; churn rises through
    ``support_calls_30d``.
``new_plan``
    A plan named ``flex`` (list price ~45), unseen before, takes a share of new
    signups and of plan changes (which become more frequent); it carries its own
    hazard effect.
``concept_flip``
    Autopay stops protecting: its coefficient flips sign, so autopay customers
    churn more. Feature distributions do not change; only the relation does.
``gradual_surge``
    ``support_surge`` ramped in: the support-call rate grows linearly from its usual
    level to four times it over ``GRADUAL_DAYS`` (six weeks).
``segment_surge``
    ``support_surge`` confined to one segment: only customers on the ``basic`` plan
    call four times as often.
``seasonal``
    A recurring peak: from the onset, the first ``SEASON_PEAK_DAYS`` (one week) of every
    ``SEASON_DAYS`` (four weeks) see usage amounts ``SEASON_USAGE`` times the usual. The
    churn relation is unchanged; after the first season the peak is nothing new.
"""

from __future__ import annotations

SCENARIOS: tuple[str, ...] = ("price_hike", "support_surge", "new_plan", "concept_flip")
# Drift shapes the detectors were not tuned on, for the replay harness (stream.local.drift_harness).
SHAPES: tuple[str, ...] = ("gradual_surge", "segment_surge", "seasonal")
ALL_SCENARIOS: tuple[str, ...] = SCENARIOS + SHAPES

# --- scenario effects -------------------------------------------------------------

PRICE_HIKE = 1.30
SUPPORT_SURGE = 4.0
FLEX_SIGNUP_SHARE = 0.40
FLEX_CHANGE_SHARE = 0.50
NEW_PLAN_CHANGE_BOOST = 3.0
GRADUAL_DAYS = 42
SURGE_SEGMENT = "basic"
SEASON_DAYS = 28
SEASON_PEAK_DAYS = 7
SEASON_USAGE = 1.6
