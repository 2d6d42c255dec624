"""Off-peak starts without a scheduler: the price at a moment (windows past midnight, the
tariff's time zone), a run's cost across window edges, and the cheapest start within a
deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hpcbridge.errors import SpecError
from hpcbridge.policy.energy import cheapest_start, cheapest_starts
from hpcbridge.reports.energy import price_at, run_cost
from hpcbridge.site import EnergyOptions

# Night power at 0.10 from 23:00 to 07:00, 0.40 otherwise, on Stockholm's clock (UTC+1 in
# December).
TARIFF = EnergyOptions.model_validate(
    {
        "price": 0.40,
        "windows": [{"start": "23:00", "end": "07:00", "price": 0.10}],
        "timezone": "Europe/Stockholm",
        "watts_per_core": 10,
    }
)
NOON = datetime(2026, 12, 3, 12, tzinfo=UTC)  # 13:00 in Stockholm


def at(hour: int, minute: int = 0, day: int = 3) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_the_price_follows_the_windows_on_the_tariffs_clock() -> None:
    assert price_at(TARIFF, at(12)) == 0.40
    assert price_at(TARIFF, at(22)) == 0.10  # 23:00 in Stockholm
    assert price_at(TARIFF, at(21, 59)) == 0.40
    assert price_at(TARIFF, at(5, 59, day=4)) == 0.10  # 06:59
    assert price_at(TARIFF, at(6, day=4)) == 0.40  # 07:00: the window has ended


def test_a_run_across_an_edge_pays_each_side_its_price() -> None:
    # 1 kW for two hours from 21:00 UTC: one hour at 0.40, one at 0.10.
    assert run_cost(TARIFF, at(21), 7200, 1000) == pytest.approx(0.50)


def test_the_cheapest_start_is_the_night_window_and_a_deadline_bounds_it() -> None:
    plan = cheapest_start(TARIFF, now=NOON, run_s=3 * 3600, power_w=1000)
    assert plan.start == at(22)  # the window opens; the whole run fits in it
    assert (plan.cost, plan.cost_now) == (pytest.approx(0.30), pytest.approx(1.20))
    assert plan.kwh == pytest.approx(3.0)
    # It must start by 21:00 to end by midnight: the best is to end as deep into the night
    # as allowed, at the latest start.
    bounded = cheapest_start(TARIFF, now=NOON, run_s=3 * 3600, power_w=1000, latest_start=at(21))
    assert bounded.start == at(21)
    assert bounded.cost == pytest.approx(0.40 + 0.10 * 2)
    with pytest.raises(SpecError, match="no start from now lets the job end before"):
        cheapest_start(
            TARIFF, now=NOON, run_s=3600, power_w=1000, latest_start=NOON - timedelta(hours=1)
        )


def test_starting_now_wins_ties_and_inside_the_window_it_starts_at_once() -> None:
    flat = EnergyOptions.model_validate(
        {"price": 0.2, "windows": [{"start": "00:00", "end": "01:00", "price": 0.2}]}
    )
    assert cheapest_start(flat, now=NOON, run_s=600, power_w=100).start == NOON
    night = at(23)  # midnight in Stockholm
    assert cheapest_start(TARIFF, now=night, run_s=600, power_w=100).start == night


def test_many_jobs_at_once_get_what_each_would_alone() -> None:
    jobs = [(3 * 3600, 1000.0, None), (600, 50.0, at(21)), (3 * 3600, 1000.0, None)]
    together = cheapest_starts(TARIFF, now=NOON, jobs=jobs)
    alone = [
        cheapest_start(TARIFF, now=NOON, run_s=run_s, power_w=watts, latest_start=latest)
        for run_s, watts, latest in jobs
    ]
    assert [(plan.start, round(plan.cost, 9)) for plan in together] == [
        (plan.start, round(plan.cost, 9)) for plan in alone
    ]
    assert together[0] is together[2]  # one shape, priced once
