"""Statistics against hand-computed values; the timer against a fake clock."""

import math

import pytest

from convbench.timing import measure, stats


def test_stats_odd_count():
    s = stats([3.0, 1.0, 5.0, 2.0, 4.0])
    assert s == {"median": 3.0, "min": 1.0, "q1": 2.0, "q3": 4.0,
                 "std": pytest.approx(math.sqrt(2.5)), "n_values": 5}


def test_stats_even_count_interpolates_quartiles():
    s = stats([4.0, 1.0, 3.0, 2.0])
    assert s["median"] == 2.5
    assert s["q1"] == pytest.approx(1.75) and s["q3"] == pytest.approx(3.25)
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))


def test_stats_single_value_and_empty():
    assert stats([2.0])["std"] == 0.0 and stats([2.0])["q3"] == 2.0
    with pytest.raises(ValueError):
        stats([])


class FakeClock:
    """Time advances only when the function under test runs: costs[i] for its i-th call."""

    def __init__(self, cost):
        self.now = 0.0
        self.calls = 0
        self.cost = cost

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.cost(self.calls)
        self.calls += 1


def test_compile_is_recorded_and_kept_out():
    clock = FakeClock(lambda i: 0.5 if i == 0 else 0.001)
    t = measure(clock.work, min_time=0.01, values=5, max_seconds=10, clock=clock)
    assert t.compile_s == pytest.approx(0.499)
    assert t.loops >= 10 and t.loops * 0.001 >= 0.01
    assert len(t.values) == 5
    assert all(v == pytest.approx(0.001) for v in t.values)
    assert t.warnings == []


def test_budget_exhausted_is_a_warning():
    clock = FakeClock(lambda i: 1.0)
    t = measure(clock.work, min_time=0.01, values=5, max_seconds=2.5, warmups=0, clock=clock)
    assert t.loops == 1 and 1 <= len(t.values) < 5
    assert any("budget" in w for w in t.warnings)


def test_unstable_values_are_flagged():
    clock = FakeClock(lambda i: 0.001 if i % 2 else 0.003)
    t = measure(clock.work, min_time=0.0001, values=6, max_seconds=10, clock=clock)
    assert t.loops == 1
    assert any("unstable" in w for w in t.warnings)


def test_values_under_timer_resolution_are_flagged():
    clock = FakeClock(lambda i: 1e-8)
    t = measure(clock.work, min_time=0, values=3, max_seconds=10, clock=clock)
    assert any("resolution" in w for w in t.warnings)
