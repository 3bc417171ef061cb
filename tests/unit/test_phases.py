"""Phases: shares of a call, and whether transforms or the multiply decide a crossover, on
synthetic rows whose answers are known by construction."""

import json

import pandas as pd
import pytest

from convbench import analysis, phases
from tests.unit.test_analysis import frame, row


def phased(algorithm, t, parts, **problem):
    """A row of median ``t`` whose phases take ``parts`` (``{phase: seconds}``)."""
    return {**row(algorithm, t, **problem), "phases_s": json.dumps(parts)}


def test_phase_times_in_kernel_order_with_shares():
    df = frame(phased("fft", 3.0, {"input transform": 1.0, "multiply": 0.5,
                                   "output transform": 2.5}),
               row("direct", 2.0))
    t = phases.phase_times(df)
    assert list(t["phase"]) == ["input transform", "multiply", "output transform"]
    assert list(t["order"]) == [0, 1, 2]
    assert list(t["share"]) == pytest.approx([0.25, 0.125, 0.625])
    assert set(t["label"]) == {"fft"}  # direct has no phases


def test_rows_that_cannot_be_trusted_have_no_phases():
    parts = {"pad": 1.0, "multiply": 1.0}
    df = frame({**phased("a", 2.0, parts), "accurate": False},
               {**phased("b", 2.0, parts), "simulated": True},
               {**row("c", status="error"), "phases_s": json.dumps(parts)},
               {**phased("d", 2.0, parts), "phases_s": "not json"})
    assert phases.phase_times(df).empty
    assert phases.transform_share(df).empty


def test_transform_share_counts_every_phase_but_the_compute():
    df = frame(phased("winograd_f43", 1.0, {"input transform": 0.3, "multiply": 0.6,
                                            "output transform": 0.1}),
               phased("separable", 1.0, {"depthwise": 0.4, "pointwise": 0.6}),
               phased("direct", 1.0, {"pad": 0.2, "multiply": 0.8}, r=5))
    s = phases.transform_share(df).set_index("label")
    assert s.loc["winograd_f43", "transform_share"] == pytest.approx(0.4)
    assert s.loc["winograd_f43", "multiply_s"] == pytest.approx(0.6)
    assert s.loc["separable", "transform_share"] == 0  # both stages compute
    assert s.loc["direct", "transform_s"] == pytest.approx(0.2)


def test_transforms_decide_when_the_multiply_alone_always_favours_one():
    """fft's multiply beats direct at both filter sizes; its transforms make it lose at 3."""
    df = frame(row("direct", 2.0, r=3), phased("fft", 4.0, {"input transform": 2.0,
                                                            "multiply": 1.0,
                                                            "output transform": 1.0}, r=3),
               row("direct", 8.0, r=5), phased("fft", 4.0, {"input transform": 1.0,
                                                            "multiply": 2.0,
                                                            "output transform": 1.0}, r=5))
    xo = analysis.crossovers(df)
    d = phases.deciders(df, xo)
    assert len(d) == 1
    got = d.iloc[0]
    assert (got["before"], got["after"], got["decided_by"]) == ("direct", "fft", "transforms")
    assert got["multiply_ratio_lo"] == pytest.approx(0.5)   # 1.0 / 2.0
    assert got["multiply_ratio_hi"] == pytest.approx(0.25)  # 2.0 / 8.0
    assert (got["transform_share_lo"], got["transform_share_hi"]) == pytest.approx((0.75, 0.5))
    assert got["sentence"] == (
        "fft overtakes direct between filter 3 and 5 at stride 1, 32→32 channels, 16x16: the "
        "multiply alone favours fft on both sides (fft's over direct's: 0.50 and 0.25), so "
        "the transforms decide where (fft's take 75% and 50% of its time).")


def test_the_multiply_decides_when_it_crosses_over_too():
    df = frame(row("direct", 2.0, r=3), phased("fft", 4.0, {"input transform": 1.0,
                                                            "multiply": 3.0}, r=3),
               row("direct", 8.0, r=5), phased("fft", 4.0, {"input transform": 1.0,
                                                            "multiply": 3.0}, r=5))
    d = phases.deciders(df, analysis.crossovers(df))
    assert list(d["decided_by"]) == ["multiply"]
    assert d.iloc[0]["multiply_ratio_lo"] == pytest.approx(1.5)
    assert "the multiply alone crosses over there too" in d.iloc[0]["sentence"]


def test_no_phases_no_verdict():
    df = frame(row("direct", 2.0, r=3), row("fft", 4.0, r=3),
               row("direct", 8.0, r=5), row("fft", 4.0, r=5))
    xo = analysis.crossovers(df)
    assert len(xo) == 1 and phases.deciders(df, xo).empty
    assert phases.deciders(df, pd.DataFrame()).empty
