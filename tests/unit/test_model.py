"""The winner model: fitted on recorded winners, predicting only algorithms that compute the
problem, its regret computed exactly, ``predict`` mode, the CLI."""

import numpy as np
import pandas as pd
import pytest

import convbench
from convbench import choices, cli, model
from convbench.spec import ConvSpec

THREADS = 2


@pytest.fixture(autouse=True)
def db(fresh_choices, monkeypatch):
    monkeypatch.setattr(choices.numba, "get_num_threads", lambda: THREADS)


def fastest(spec: ConvSpec) -> str:
    """The synthetic machine's winner: im2col for 1x1, Winograd for 3x3, FFT for the rest."""
    return {1: "im2col", 3: "winograd_f43"}.get(spec.r, "fft")


def problems(sizes=(8, 12, 16, 24), filters=(1, 3, 5, 7)):
    return [ConvSpec(c=c, h=h, k=c, r=r, padding=r // 2) for r in filters for c in (4, 8)
            for h in sizes]


def entries_of(specs, slow=None) -> dict:
    """Entries whose winner is `fastest` and the others ``slow[algo]`` x slower (default 2)."""
    out = {}
    for spec in specs:
        win = fastest(spec)
        times = {a: (1.0 if a == win else (slow or {}).get(a, 2.0)) * 1e-3
                 for a in ("direct", "im2col", "fft", "winograd_f43")
                 if a == win or a != "winograd_f43" or spec.r == 3}
        out[choices.entry_key(spec.id, "cpu", THREADS)] = {
            "problem": spec.id, "dtype": "float32", "device": "cpu",
            "times": {a: {"median_s": t, "q1_s": t, "q3_s": t} for a, t in times.items()},
            "winner": win, "lead": None, "decisive": True, "source": "sweep", "recorded": ""}
    return out


def test_predicts_the_recorded_pattern_on_new_shapes():
    m = model.fit(entries_of(problems()))
    assert m.n_problems == 32
    for spec in (ConvSpec(c=6, h=20, k=6, r=1), ConvSpec(c=6, h=20, k=6, r=3, padding=1),
                 ConvSpec(c=6, h=20, k=6, r=7, padding=3)):
        assert m.predict(spec) == fastest(spec)
    rules = m.rules().splitlines()
    # one rule per algorithm's region: the three winners, each exact (1.00x) over its problems
    assert len(rules) == 3 and all(" (expected 1.00x the best, " in r for r in rules)
    assert sorted(r.split(": ")[1].split(" ")[0] for r in rules) == ["fft", "im2col",
                                                                    "winograd_f43"]
    assert sum(int(r.split(", ")[-1].split(" ")[0]) for r in rules) == 32


def test_only_an_algorithm_that_computes_the_problem_is_predicted():
    # every recorded problem is 3x3, where Winograd wins and im2col comes second: a 5x5 one
    # gets im2col
    m = model.fit(entries_of([s for s in problems() if s.r == 3], slow={"im2col": 1.5}))
    assert m.predict(ConvSpec(c=4, h=8, k=4, r=5, padding=2)) == "im2col"
    assert m.predict(ConvSpec(c=4, h=8, k=4, r=3, padding=1)) == "winograd_f43"


def test_regret_is_the_predicted_time_over_the_best_on_held_out_problems():
    entries = entries_of(problems(), slow={"direct": 3.0, "im2col": 1.5})
    table = model.regret(entries)
    assert len(table) == 32 and set(table["problem"]) == {s.id for s in problems()}
    for _, r in table.iterrows():
        times = entries[choices.entry_key(r["problem"], "cpu", THREADS)]["times"]
        assert r["best_s"] == min(t["median_s"] for t in times.values())
        assert r["regret"] == times[r["predicted"]]["median_s"] / r["best_s"]
        assert (r["regret"] == 1) == (r["predicted"] == r["winner"])
    # the pattern is learnt: most held-out problems get their winner
    assert model.summary(table)["top1"] >= 0.75


def test_summary_is_exact():
    table = pd.DataFrame({"problem": list("abcd"), "winner": ["x", "x", "y", "y"],
                          "predicted": ["x", "y", "y", "z"], "best_s": [1.0, 2.0, 3.0, 4.0],
                          "predicted_s": [1.0, 3.0, 3.0, np.nan],
                          "count": [1, 2, 1, 5]})
    table["regret"] = table["predicted_s"] / table["best_s"]
    s = model.summary(table)
    assert s["median"] == pytest.approx(1.0) and s["worst"] == pytest.approx(1.5)
    assert s["total"] == pytest.approx((1 + 2 * 3 + 3) / (1 + 2 * 2 + 3))
    assert s["top1"] == 0.5 and s["untimed"] == 1 and s["problems"] == 4


def test_held_out_runs_are_not_trained_on(monkeypatch):
    train, test = problems(sizes=(8, 12)), problems(sizes=(16, 24))
    entries = entries_of(train + test)
    seen = []
    real = model.fit
    monkeypatch.setattr(model, "fit", lambda e, d="cpu": seen.append(e) or real(e, d))
    rows = pd.DataFrame([{"problem": s.id, "name": f"net:{i}", "count": 1 + i % 2,
                          "device": "cpu", "algorithm": a, "family": "f", "operator": "conv",
                          "status": "ok", "accurate": True, "simulated": False,
                          "median_s": t["median_s"], "q1_s": t["q1_s"], "q3_s": t["q3_s"]}
                         for i, s in enumerate(test)
                         for a, t in entries[choices.entry_key(s.id, "cpu", THREADS)]
                         ["times"].items()])
    table = model.held_out(entries, rows)
    assert {e["problem"] for e in seen[0].values()} == {s.id for s in train}
    assert len(table) == len(test) and (table["regret"] == 1).all()
    assert list(table["count"]) == [1 + i % 2 for i in range(len(test))]


def test_auto_predict_mode_measures_and_records_nothing():
    choices._write(THREADS, [dict(e) for e in entries_of(problems()).values()])
    spec = ConvSpec(c=6, h=10, k=6, r=3, padding=1)
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(spec.weight_shape).astype(np.float32)
    y = convbench.conv2d(x, w, padding=1, algo="auto", auto_mode="predict")
    c = convbench.last_choice()
    assert (c.algorithm, c.source) == ("winograd_f43", "predicted")
    assert choices.entry_key(spec.id, "cpu", THREADS) not in choices.table(THREADS)
    np.testing.assert_allclose(y, convbench.reference_conv2d(x, w, padding=1), atol=1e-3)


def test_cli_fit_and_report(capsys):
    assert cli.main(["model", "report", "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "at least 2 are needed" in err
    assert cli.main(["model", "fit", "--threads", "2"]) == 2
    assert "no choices recorded" in capsys.readouterr().err
    choices._write(THREADS, [dict(e) for e in entries_of(problems()).values()])
    assert cli.main(["model", "fit", "--threads", "2"]) == 0
    assert "one rule per region" in capsys.readouterr().out
    assert cli.main(["model", "report", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    s = model.summary(model.regret(choices.table(THREADS)))
    assert "5-fold cross-validation over 32 recorded problems" in out
    assert (f"median {s['median']:.3f}, worst {s['worst']:.3f}, total {s['total']:.3f}; "
            f"top-1 accuracy {s['top1']:.0%}") in out


def test_a_reports_model_is_fitted_on_its_own_rows():
    from convbench import report

    def rows_of(specs):
        entries = entries_of(specs)
        return pd.DataFrame([
            {"problem": e["problem"], "name": "", "dtype": "float32", "device": "cpu",
             "threads": 1, "algorithm": a, "family": "f", "operator": "conv", "status": "ok",
             "accurate": True, "simulated": False, **t}
            for e in entries.values() for a, t in e["times"].items()])

    section = report.winner_model(rows_of(problems()))
    assert section["problems"] == 32 and len(section["rules"]) >= 3
    assert section["regret"].startswith("median ") and section["folds"] == model.FOLDS
    assert report.winner_model(rows_of(problems()[:report.MODEL_MIN_PROBLEMS - 1])) == {}
