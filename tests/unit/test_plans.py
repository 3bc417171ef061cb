"""A network's plan from the choice database: per layer the recorded winner and its time,
totals against every algorithm and baseline timed on every layer, the CLI."""

import dataclasses
import math

import pytest

from convbench import choices, cli, plans, sweep

THREADS = 2
LAYERS = [dataclasses.replace(s, count=c)
          for s, c in zip(sweep.preset("smoke").problems, (1, 3, 2), strict=True)]
CONFIG = dataclasses.replace(sweep.preset("smoke"), problems=tuple(LAYERS))


pytestmark = pytest.mark.usefixtures("fresh_choices")


def record(spec, times, baselines=None):
    def t(v):
        return {"median_s": v, "q1_s": v, "q3_s": v}

    choices._write(THREADS, [{"problem": spec.id, "dtype": "float32", "device": "cpu",
                              "times": {a: t(v) for a, v in times.items()},
                              "baselines": {a: t(v) for a, v in (baselines or {}).items()},
                              "source": "sweep", "recorded": ""}])


def test_plan_takes_each_layers_winner_and_counts_occurrences():
    record(LAYERS[0], {"direct": 1.0, "im2col": 2.0}, {"torch": 4.0})
    record(LAYERS[1], {"direct": 3.0, "im2col": 1.0, "winograd_f43": 0.5}, {"torch": 1.0})
    record(LAYERS[2], {"direct": 2.0, "im2col": 3.0}, {"torch": 2.0})
    p = plans.plan(CONFIG, threads=THREADS)
    assert list(p.layers["algorithm"]) == ["direct", "winograd_f43", "direct"]
    assert list(p.layers["expected_s"]) == [1.0, 0.5, 2.0]
    assert p.total_s == pytest.approx(1 * 1.0 + 3 * 0.5 + 2 * 2.0)
    # winograd_f43 does not have a time on every layer: no network total for it
    assert p.totals == pytest.approx({"direct": 1 + 9 + 4, "im2col": 2 + 3 + 6,
                                      "torch (baseline)": 4 + 3 + 4})


def test_a_layer_never_measured_is_predicted_without_a_time():
    record(LAYERS[0], {"direct": 1.0, "im2col": 2.0})
    record(LAYERS[1], {"direct": 1.0, "im2col": 2.0})
    p = plans.plan(CONFIG, threads=THREADS)
    assert list(p.layers["source"]) == ["sweep", "sweep", "predicted"]
    assert p.layers["algorithm"].iloc[2] == "direct" and math.isnan(p.total_s)
    assert p.totals == {}


def test_cli_plan(capsys):
    assert cli.main(["plan", "smoke", "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no layer of smoke is recorded" in err
    assert cli.main(["plan", "nonet", "--threads", "2"]) == 2
    assert "neither a preset" in capsys.readouterr().err
    for spec in sweep.preset("smoke").problems:
        record(spec, {"direct": 1e-3, "im2col": 2e-3}, {"torch": 4e-3})
    assert cli.main(["plan", "smoke", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "smoke:3x3" in out and "total 3.000 ms" in out
    assert "torch (baseline)" in out and "plan / it 0.25" in out
