"""The token bucket of the rate limits, over plain numbers and a clock passed in."""

from __future__ import annotations

import pytest

from auth.rate_limits import (
    MAX_WAIT,
    Bucket,
    Quota,
    charge,
    charge_all,
    empty,
    full,
    idle,
    peek,
    shared_rate,
)


def test_a_full_bucket_admits_its_burst_then_refuses_until_refilled() -> None:
    quota = Quota(rate=10, burst=5)  # 10 a second, 5 at once
    bucket = full(quota, now=0.0)
    verdicts = [charge(bucket, quota, 1, now=0.0) for _ in range(6)]
    assert [v.admitted for v in verdicts] == [True] * 5 + [False]
    assert [v.remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    refused = verdicts[5]
    assert (refused.limit, refused.remaining, refused.retry_after) == (5, 0, 1)
    assert refused.reset == 1  # 5 units at 10 a second: half a second, rounded up
    assert not charge(bucket, quota, 1, now=0.05).admitted  # half a unit back
    assert charge(bucket, quota, 1, now=0.1).admitted  # one unit back
    assert peek(bucket, quota, now=0.6).remaining == 5  # never above the burst


def test_a_cost_above_the_burst_passes_a_full_bucket_and_leaves_a_debt() -> None:
    quota = Quota(rate=100, burst=50)  # rows: a log-batch of 1000 metrics
    bucket = full(quota, now=0.0)
    first = charge(bucket, quota, 1000, now=0.0)
    assert first.admitted and first.remaining == 0
    assert bucket.level == -950
    second = charge(bucket, quota, 1000, now=1.0)  # 100 back: still 850 in debt
    assert not second.admitted
    assert second.retry_after == 9  # (50 - -850) / 100 s
    assert bucket.level == -850  # a refusal takes nothing
    assert charge(bucket, quota, 1000, now=10.0).admitted
    # Over any long stretch the admitted rows stay within rate x time + burst.
    admitted, now = 0, 0.0
    bucket = full(quota, now)
    while now < 60:
        if charge(bucket, quota, 1000, now).admitted:
            admitted += 1000
        now += 0.25
    assert admitted <= 100 * 60 + 1000


def test_refusals_tell_when_to_retry_in_whole_seconds() -> None:
    quota = Quota(rate=0.5, burst=1)  # one every two seconds
    bucket = full(quota, 0.0)
    assert charge(bucket, quota, 1, 0.0).admitted
    refused = charge(bucket, quota, 1, 0.5)
    assert (refused.admitted, refused.retry_after, refused.reset) == (False, 2, 2)
    fast = Quota(rate=1000, burst=1)
    bucket = full(fast, 0.0)
    charge(bucket, fast, 1, 0.0)
    assert charge(bucket, fast, 1, 0.0).retry_after == 1  # never 0: Retry-After: 0 spins


def test_idle_buckets_are_those_refilled_to_the_brim() -> None:
    quota = Quota(rate=10, burst=5)
    bucket = full(quota, 0.0)
    assert idle(bucket, quota, 0.0)
    charge(bucket, quota, 3, 0.0)
    assert not idle(bucket, quota, 0.2)
    assert idle(bucket, quota, 0.3)


@pytest.mark.parametrize(("limit", "processes", "rate", "burst"), [
    (100.0, 1, 100.0, 100.0),
    (100.0, 4, 25.0, 25.0),
    (100.0, 0, 100.0, 100.0),  # no count yet: this process alone
    (3.0, 8, 0.375, 1.0),  # a burst is at least one unit, or nothing would ever pass
])
def test_a_limit_is_shared_between_the_live_processes(limit: float, processes: int,
                                                       rate: float, burst: float) -> None:
    assert shared_rate(limit, processes, burst_seconds=1.0) == Quota(rate, burst)


def test_a_quota_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Quota(0, 1)
    assert Bucket(1.0, 0.0).level == 1.0


def test_several_buckets_are_charged_together_or_not_at_all() -> None:
    team, caller = Quota(rate=100, burst=100), Quota(rate=1, burst=2)
    team_bucket, caller_bucket = full(team, 0.0), full(caller, 0.0)
    both = [(team_bucket, team), (caller_bucket, caller)]
    first = charge_all(both, 1, 0.0)
    assert first.admitted and (first.limit, first.remaining) == (2, 1)  # the tighter one
    assert charge_all(both, 1, 0.0).admitted
    refused = charge_all(both, 1, 0.0)
    assert not refused.admitted and refused.limit == 2
    assert team_bucket.level == 98  # the caller's refusal used none of the team's


def test_an_empty_bucket_refuses_before_the_cost_is_known() -> None:
    rows = Quota(rate=10, burst=10)
    bucket = full(rows, 0.0)
    assert empty([(bucket, rows)], 0.0) is None
    charge(bucket, rows, 30, 0.0)  # a batch larger than the burst: 20 in debt
    refused = empty([(bucket, rows)], 1.0)  # 10 back: still 10 in debt
    assert refused is not None and (refused.admitted, refused.retry_after) == (False, 2)
    assert empty([(bucket, rows)], 2.1) is None  # one unit back: any batch passes
    assert charge(bucket, rows, 30, 2.1).admitted
    assert bucket.level == pytest.approx(-29)


def test_waits_are_capped_for_absurdly_small_limits() -> None:
    """Regression (attack25): the client sleeps for Retry-After; a limit an administrator
    set to 1e-300 a second made it a 300-digit number."""
    quota = Quota(rate=1e-300, burst=1e-300)
    bucket = full(quota, now=0.0)
    charge(bucket, quota, 1, now=0.0)
    refused = charge(bucket, quota, 1, now=0.0)
    assert not refused.admitted
    assert refused.retry_after == MAX_WAIT and 0 <= refused.reset <= MAX_WAIT
