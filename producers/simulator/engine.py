"""The :class:`Simulator`: a deterministic, seeded day-by-day event stream and its oracle (the true hazard).

The simulator plays a subscription business day by day in event time and yields
valid :mod:`schemas.events` models. Its churn process is driven by the very
features the model sees: every customer's :class:`stream.features.CustomerState`
is maintained with :func:`stream.features.apply` on exactly the events the
simulator emits, and each day the customer closes the account with the daily
probability :meth:`Simulator.true_hazard` of
:func:`stream.features.feature_values` of that state (one feature logic, no
hidden shortcut). A small latent frailty per customer keeps the problem from
being perfectly separable, so the oracle (:meth:`Simulator.oracle_probability`)
is the best score any model could reach, not a perfect one.

The world it plays is described in :mod:`producers.simulator.world`, its drift
in :mod:`producers.simulator.scenarios`. Like the feature logic, this is a pure
core: deterministic for a given :class:`SimConfig` (same seed, same events, byte
for byte), no I/O, no clock, no work at import time.
:func:`producers.simulator.pacing.paced` is the only part that waits, and it
takes its clock and sleep as arguments.

>>> sim = Simulator(SimConfig(n_customers=3, days=2, seed=1))
>>> evs = list(sim.events())
>>> [e.event_type for e in evs[:3]]
['signup', 'signup', 'signup']
>>> all(a.ts <= b.ts for a, b in zip(evs, evs[1:]))
True
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from producers.simulator.config import SimConfig
from producers.simulator.scenarios import (
    FLEX_CHANGE_SHARE,
    FLEX_SIGNUP_SHARE,
    GRADUAL_DAYS,
    NEW_PLAN_CHANGE_BOOST,
    PRICE_HIKE,
    SEASON_DAYS,
    SEASON_PEAK_DAYS,
    SEASON_USAGE,
    SUPPORT_SURGE,
    SURGE_SEGMENT,
)
from producers.simulator.world import (
    _FLEX,
    _PLANS,
    _PRICES,
    AUTOPAY_FAILURE_FACTOR,
    AUTOPAY_SHARE,
    AUTOPAY_TOGGLE_RATE,
    HAZARD,
    JOIN_RATE,
    JOIN_RESTORE,
    MAX_TENURE_MONTHS,
    PLAN_CHANGE_RATE,
    PLAN_MIX,
    PRIOR_DISENGAGEMENT_DAYS,
    SUPPORT_REASONS,
    SUPPORT_WHEN_DISENGAGED,
    USAGE_NOISE_SD,
    _columns,
    _sigmoid,
    _Traits,
)
from schemas.events import (
    AccountClosed,
    AccountEvent,
    AutopayChanged,
    Payment,
    PlanChanged,
    Signup,
    SupportCall,
    Usage,
)
from stream.pipeline.features import DAY, MONTH_DAYS, CustomerState, apply, feature_values


@dataclass(slots=True)
class _Pending:
    """One event of the day before it gets its id: sorted by (ts, seq)."""

    ts: int
    seq: int
    customer: int
    cls: type
    fields: dict


class Simulator:
    """Generates the event stream of :class:`SimConfig` and knows the true churn hazard.

    :meth:`events` is lazy (day by day) and restarts from the seed on every
    call, so two iterations yield the same stream. :attr:`customers` and the
    latent traits used by :meth:`true_hazard` belong to the latest iteration.
    """

    def __init__(self, config: SimConfig):
        self.config = config
        self._start_ts = config.start.timestamp()
        self._reset()

    # --- public API ---------------------------------------------------------------

    @property
    def onset_ts(self) -> float | None:
        """Epoch seconds of the scenario onset, ``None`` without a scenario."""
        if self.config.scenario is None:
            return None
        return self._start_ts + self.config.onset_day * DAY

    @property
    def customers(self) -> list[str]:
        """Ids of every customer created so far in the current iteration."""
        return list(self._ids)

    def events(self, until_day: int | None = None) -> Iterator[AccountEvent]:
        """All events in non-decreasing ``ts`` order, backdated signups first.

        With ``until_day`` the stream stops before that day; :meth:`resume` goes on from there.
        """
        self._reset()
        yield from self._emit(self._prelude())
        yield from self.resume(until_day)

    def resume(self, until_day: int | None = None) -> Iterator[AccountEvent]:
        """The days after the last one generated, up to ``until_day`` (default: to ``config.days``).

        ``config`` may be replaced before resuming by one with the same seed, customers, start
        and onset day: the stream then branches at that day boundary, into the new config's
        scenario from its onset, exactly as the new config's own :meth:`events` would run.
        A day left part-way is not resumed: stop at days, with ``until_day``.
        """
        end = self.config.days if until_day is None else min(until_day, self.config.days)
        while self._next_day < end:
            day = self._next_day
            self._next_day += 1
            yield from self._emit(self._day(day))

    def true_hazard(self, customer_id: str, values: Mapping[str, float | int | str], at: float) -> float:
        """The daily churn probability the simulator uses for these feature values at ``at``.

        ``values`` is a mapping as returned by :func:`stream.features.feature_values`.
        The customer's latent frailty is added; an id this simulator has not
        created gets the population mean (0). Scenario effects apply when
        ``at >= onset_ts``.
        """
        return float(self.true_hazards([customer_id], [values], np.array([at]))[0])

    def true_hazards(
        self, customer_ids: Sequence[str], values: Sequence[Mapping[str, float | int | str]], at: np.ndarray
    ) -> np.ndarray:
        """:meth:`true_hazard` of many (customer, feature values, time) rows at once."""
        frailty = self._traits.frailty
        index = self._index
        rows = np.array([index.get(c, -1) for c in customer_ids], dtype=np.int64)
        known = rows >= 0
        f = np.zeros(rows.size)
        f[known] = frailty[rows[known]]
        return self._hazards(_columns(values), f, at)

    def oracle_probability(
        self, customer_id: str, values: Mapping[str, float | int | str], at: float, horizon_days: int
    ) -> float:
        """``1 - (1 - true_hazard)**horizon_days``: churn within the horizon at constant hazard."""
        return float(self.oracle_probabilities([customer_id], [values], np.array([at]), horizon_days)[0])

    def oracle_probabilities(
        self,
        customer_ids: Sequence[str],
        values: Sequence[Mapping[str, float | int | str]],
        at: np.ndarray,
        horizon_days: int,
    ) -> np.ndarray:
        """:meth:`oracle_probability` of many rows at once (one numpy pass instead of one per row)."""
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be >= 0, got {horizon_days}")
        return 1.0 - (1.0 - self.true_hazards(customer_ids, values, at)) ** horizon_days

    # --- state --------------------------------------------------------------------

    def _reset(self) -> None:
        self._rng = np.random.default_rng(self.config.seed)
        self._traits = _Traits()
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._states: list[CustomerState] = []
        self._active = np.zeros(0, dtype=bool)
        self._next_event = 0
        self._next_day = 0

    def _new_customers(self, k: int, signup_ts: np.ndarray) -> np.ndarray:
        """Create ``k`` customers signing up at ``signup_ts``; returns their indices."""
        first = self._traits.n
        bdom = np.array([datetime.fromtimestamp(t, tz=UTC).day for t in signup_ts])
        self._traits.add(self._rng, k, bdom)
        prefix = self.config.id_prefix
        for n in range(first, first + k):
            cid = f"{prefix}c{n:06d}"
            self._ids.append(cid)
            self._index[cid] = n
            self._states.append(CustomerState())
        self._active = np.concatenate([self._active, np.ones(k, dtype=bool)])
        return np.arange(first, first + k)

    def _hazards(self, cols: Mapping[str, np.ndarray], frailty: np.ndarray, at: float | np.ndarray) -> np.ndarray:
        onset = self.onset_ts
        flipped = self.config.scenario == "concept_flip" and onset is not None and np.asarray(at) >= onset
        return _sigmoid(HAZARD.logit(cols, frailty, flipped))

    # --- generation -----------------------------------------------------------------

    def _signups(self, idx: np.ndarray, ts: np.ndarray, price_factor: float, flex_share: float) -> list[_Pending]:
        """Signup events for new customers ``idx`` (plan, charges and autopay drawn here)."""
        rng = self._rng
        k = idx.size
        plans = rng.choice(len(PLAN_MIX), size=k, p=PLAN_MIX)
        if flex_share > 0:
            plans = np.where(rng.random(k) < flex_share, _FLEX, plans)
        autopay = rng.random(k) < AUTOPAY_SHARE
        charges = np.round(_PRICES[plans] * price_factor * self._traits.jitter[idx], 2)
        return [
            _Pending(
                int(ts[j]),
                j,
                int(i),
                Signup,
                {"plan": _PLANS[plans[j]], "monthly_charges": float(charges[j]), "has_autopay": bool(autopay[j])},
            )
            for j, i in enumerate(idx)
        ]

    def _prelude(self) -> list[_Pending]:
        """The initial population's backdated signups."""
        n = self.config.n_customers
        back = self._rng.uniform(0.0, MAX_TENURE_MONTHS * MONTH_DAYS * DAY, n)
        ts = np.floor(self._start_ts - back).astype(np.int64) - 1  # strictly before start
        idx = self._new_customers(n, ts)
        # some existing customers were already drifting away before the stream starts
        tr = self._traits
        already = self._rng.random(n) < 1.0 - (1.0 - tr.tendency[idx]) ** PRIOR_DISENGAGEMENT_DAYS
        since = self._rng.uniform(0.0, PRIOR_DISENGAGEMENT_DAYS, n)
        tr.dis_start[idx] = np.where(already, -since, np.inf)
        return self._signups(idx, ts, price_factor=1.0, flex_share=0.0)

    def _day(self, day: int) -> list[_Pending]:
        """Every event of simulated day ``day`` (unsorted), in a fixed draw order."""
        cfg = self.config
        rng = self._rng
        tr = self._traits
        t0 = self._start_ts + day * DAY
        scenario = cfg.scenario if day >= cfg.onset_day else None
        pending: list[_Pending] = []

        def add(ts: np.ndarray, customers: np.ndarray, cls: type, fields: Iterable[dict]) -> None:
            base = len(pending)
            day_ts = (ts + int(t0)).tolist()
            for j, (t, i, f) in enumerate(zip(day_ts, customers.tolist(), fields)):
                pending.append(_Pending(t, base + j, i, cls, f))

        def times(k: int) -> np.ndarray:
            return rng.integers(0, int(DAY), k)

        idx = np.flatnonzero(self._active)
        values = [feature_values(self._states[i], t0) for i in idx]
        cols = _columns(values)

        # 1. churn, decided at the end of the previous day
        if day > 0 and idx.size:
            closing = rng.random(idx.size) < self._hazards(cols, tr.frailty[idx], t0)
        else:
            closing = np.zeros(idx.size, dtype=bool)
        churners = idx[closing]
        add(times(churners.size), churners, AccountClosed, ({} for _ in churners))
        self._active[churners] = False
        keep = ~closing
        idx = idx[keep]
        plan = np.array([v["plan"] for v, kept in zip(values, keep) if kept], dtype=object)
        charges = cols["monthly_charges"][keep]
        autopay = cols["has_autopay"][keep] > 0
        k = idx.size

        # 2. scenario onset: the price hike reaches every active customer
        hike_day = scenario == "price_hike" and day == cfg.onset_day
        if hike_day:
            raised = np.round(charges * PRICE_HIKE, 2)
            add(
                times(k),
                idx,
                PlanChanged,
                ({"plan": p, "monthly_charges": c} for p, c in zip(plan.tolist(), raised.tolist())),
            )

        # 3. engagement: some customers start drifting away
        starting = np.isinf(tr.dis_start[idx]) & (rng.random(k) < tr.tendency[idx])
        tr.dis_start[idx[starting]] = day
        elapsed = np.maximum(0.0, day - tr.dis_start[idx])  # 0 while not disengaging (dis_start = inf)
        engagement = np.exp(-elapsed / tr.tau[idx])

        # 4. usage (every existing customer is seen on day 0, see module doc)
        used = rng.random(k) < tr.p_use[idx] * engagement**0.7
        if day == 0:
            used[:] = True
        amount = np.round(tr.level[idx] * engagement * rng.lognormal(0.0, USAGE_NOISE_SD, k), 3)
        if scenario == "seasonal" and (day - cfg.onset_day) % SEASON_DAYS < SEASON_PEAK_DAYS:
            amount = np.round(amount * SEASON_USAGE, 3)
        add(times(int(used.sum())), idx[used], Usage, ({"amount": a} for a in amount[used].tolist()))

        # 5. support calls
        rate = tr.support[idx] * (1.0 + SUPPORT_WHEN_DISENGAGED * (1.0 - engagement))
        if scenario == "support_surge":
            rate = rate * SUPPORT_SURGE
        elif scenario == "gradual_surge":
            rate = rate * (1.0 + (SUPPORT_SURGE - 1.0) * min(1.0, (day - cfg.onset_day) / GRADUAL_DAYS))
        elif scenario == "segment_surge":
            rate = rate * np.where(plan == SURGE_SEGMENT, SUPPORT_SURGE, 1.0)
        calls = rng.poisson(rate)
        callers = np.repeat(idx, calls)
        reasons = rng.choice(len(SUPPORT_REASONS), size=callers.size)
        add(times(callers.size), callers, SupportCall, ({"reason": SUPPORT_REASONS[r]} for r in reasons))

        # 6. monthly payments on the billing day of month
        date = datetime.fromtimestamp(t0, tz=UTC)
        month_days = calendar.monthrange(date.year, date.month)[1]
        bdom = tr.bdom[idx]
        due = (bdom == date.day) | ((date.day == month_days) & (bdom > month_days))
        fail_p = tr.fail[idx] * np.where(autopay, AUTOPAY_FAILURE_FACTOR, 1.0)
        failed = rng.random(k) < fail_p
        bills = zip(charges[due].tolist(), failed[due].tolist())
        add(
            times(int(due.sum())),
            idx[due],
            Payment,
            ({"amount": c, "status": "failed" if f else "ok"} for c, f in bills),
        )

        # 7. plan changes (none on the price-hike day: one plan event per customer)
        change_rate = 0.0 if hike_day else PLAN_CHANGE_RATE
        flex_share = 0.0
        if scenario == "new_plan":
            change_rate *= NEW_PLAN_CHANGE_BOOST
            flex_share = FLEX_CHANGE_SHARE
        price_factor = PRICE_HIKE if scenario == "price_hike" else 1.0
        changing = rng.random(k) < change_rate
        pick = rng.integers(0, 6, k)  # uniform over both 2 and 3 choices
        to_flex = rng.random(k) < flex_share
        current = np.array([_PLANS.index(p) for p in plan], dtype=int)
        # a classic plan moves to one of the other two classic plans; flex to any classic plan
        target = np.where(current == _FLEX, pick % 3, (current + 1 + pick % 2) % 3)
        target = np.where(to_flex & (current != _FLEX), _FLEX, target)
        new_charges = np.round(_PRICES[target] * price_factor * tr.jitter[idx], 2)
        add(
            times(int(changing.sum())),
            idx[changing],
            PlanChanged,
            (
                {"plan": _PLANS[p], "monthly_charges": c}
                for p, c in zip(target[changing].tolist(), new_charges[changing].tolist())
            ),
        )

        # 8. autopay toggles
        toggling = rng.random(k) < AUTOPAY_TOGGLE_RATE
        add(
            times(int(toggling.sum())),
            idx[toggling],
            AutopayChanged,
            ({"enabled": not a} for a in autopay[toggling].tolist()),
        )

        # 9. new customers join, pulled towards a stable active population
        gap = cfg.n_customers - int(self._active.sum())
        joining = int(rng.poisson(max(0.0, cfg.n_customers * JOIN_RATE + JOIN_RESTORE * gap)))
        if joining:
            ts = times(joining)
            new = self._new_customers(joining, t0 + ts)
            signup_flex = FLEX_SIGNUP_SHARE if scenario == "new_plan" else 0.0
            for p in self._signups(new, t0 + ts, price_factor, signup_flex):
                p.seq = len(pending)
                pending.append(p)
        return pending

    def _emit(self, pending: list[_Pending]) -> Iterator[AccountEvent]:
        """Sort one batch by time, give ids, fold into the states, yield."""
        pending.sort(key=lambda p: (p.ts, p.seq))
        prefix = self.config.id_prefix
        ids = self._ids
        states = self._states
        for p in pending:
            event = p.cls(
                event_id=f"{prefix}e{self._next_event}",
                customer_id=ids[p.customer],
                ts=datetime.fromtimestamp(p.ts, tz=UTC),
                **p.fields,
            )
            self._next_event += 1
            apply(states[p.customer], event)
            yield event
