"""The tuner and its cache, on a fake family whose speed depends on its parameter (nothing is
compiled): choosing beyond the spread, hits, misses, key changes, corrupt files, runs."""

import json
import types

import numpy as np
import pytest

from convbench import cache, cli, registry, runner, store, sweep, tuning
from convbench.spec import ConvSpec
from convbench_kernels.cpu import target
from convbench_kernels.reference import reference_conv2d

_LAST = [0.0]  # the delay of the fake family's last call


def make_family(delays):
    """A family whose candidate ``{"d": i}`` takes ``delays[i]`` seconds a call, as the fake
    clock of the `fake` fixture reads it (a sleep measured on a loaded machine is not
    ``delays[i]``: equal candidates could differ beyond their spread)."""

    def prepare(w, spec, params=None):
        p = target.resolve("fake", {"d": 0}, params)

        def compute(x, out):
            _LAST[0] = delays[p["d"]]
            out[...] = reference_conv2d(x, w, pads=spec.pads)

        compute.params = p
        return compute

    return types.SimpleNamespace(
        defaults=lambda t: {"d": 0}, space=lambda t: [{"d": i} for i in range(len(delays))],
        supports=lambda s: None if s.r == 1 and s.groups == 1 else "1x1 only", prepare=prepare)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A private cache, and the registry's tunable families replaced by the fake one."""
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tuning, "PROBLEMS", (ConvSpec(c=4, h=8, k=4, r=1, name="1x1"),
                                             ConvSpec(c=4, h=8, k=4, r=3, name="3x3")))
    monkeypatch.setattr(tuning, "ROUNDS", 2)
    monkeypatch.setattr(tuning, "MIN_TIME", 0.001)
    monkeypatch.setattr(target, "_INSTALLED", {})

    def measure(fn, **kwargs):  # one call, timed by the fake clock
        fn()
        return types.SimpleNamespace(stats={"median": _LAST[0]})

    monkeypatch.setattr(tuning, "measure", measure)

    def use(delays):
        monkeypatch.setattr(registry, "TUNABLE", {"fake": make_family(delays)})

    return use


def test_choose_keeps_the_defaults_unless_beaten_beyond_the_spread():
    t = np.array([[[1.0, 2.0]] * 3,            # defaults
                  [[0.9, 1.8], [0.9, 1.8], [0.93, 1.9]],  # 10 % faster, spread ~4 %
                  [[0.99, 1.98]] * 3])          # 1 % faster: within the noise floor
    i, scores = tuning.choose(t)
    assert i == 1 and scores[1]["ratio"] == pytest.approx(0.9)
    assert scores[2]["ratio"] == pytest.approx(0.99) and scores[0]["spread"] == 0
    noisy = t.copy()
    noisy[0, 2] = [1.2, 2.4]  # the defaults' own spread is now 20 %
    assert tuning.choose(noisy)[0] == 0


def test_tune_picks_the_faster_candidate_caches_and_installs(fake):
    fake([0.004, 0.0005, 0.006])
    t = tuning.tune(1, budget=30)
    assert t.source == "tuned" and t.params == {"fake": {"d": 1}}
    assert target.resolve("fake", {"d": 0}) == {"d": 1}  # installed
    data = json.loads(next((cache.cache_dir()).glob("tuning-*.json")).read_text())
    assert data["params"]["fake"] == {"d": 1} and data["key"]["threads"] == 1
    assert "runs" in data["results"]["fake"]["decision"]
    again = tuning.load(1)
    assert again.source == "cache" and again.params == {"fake": {"d": 1}}


def test_equal_candidates_keep_the_defaults(fake):
    fake([0.001, 0.001])
    t = tuning.tune(1, budget=30)
    assert t.params == {"fake": {}} and "kept the defaults" in t.results["fake"]["decision"]


def test_a_family_that_computes_no_tuning_problem_keeps_its_defaults(fake, monkeypatch):
    fake([0.002, 0.0001])
    monkeypatch.setattr(tuning, "PROBLEMS", (ConvSpec(c=4, h=8, k=4, r=3),))
    t = tuning.tune(1, budget=30)
    assert t.params == {"fake": {}}
    assert t.results["fake"]["decision"].startswith("kept the defaults {d=0}: it computes none")


def test_a_miss_runs_the_defaults_and_says_so(fake):
    fake([0.001])
    t = tuning.load(1)
    assert t.source == "defaults" and t.params == {"fake": {}}
    assert t.note.startswith("not tuned on this machine")


def test_another_key_is_a_miss(fake, monkeypatch):
    fake([0.002, 0.0005])
    tuning.tune(1, budget=30)
    assert tuning.load(1).source == "cache"
    assert tuning.load(2).source == "defaults"  # threads are part of the key
    real = cache.machine_key
    monkeypatch.setattr(cache, "machine_key", lambda t: {**real(t), "convbench": "9.9"})
    assert tuning.load(1).source == "defaults"


@pytest.mark.parametrize("junk", ["{not json", "[]", json.dumps({"format": 99}), ""])
def test_a_corrupt_or_foreign_file_is_ignored_with_a_reason(fake, junk):
    fake([0.002, 0.0005])
    tuning.tune(1, budget=30)
    path = next(cache.cache_dir().glob("tuning-*.json"))
    path.write_text(junk)
    t = tuning.load(1)
    assert t.source == "defaults" and "ignored" in t.note and str(path) in t.note


def test_a_foreign_key_in_the_file_is_ignored(fake):
    fake([0.002, 0.0005])
    tuning.tune(1, budget=30)
    path = next(cache.cache_dir().glob("tuning-*.json"))
    data = json.loads(path.read_text())
    data["key"]["cpu_model"] = "another CPU"
    path.write_text(json.dumps(data))
    assert "another machine key" in tuning.load(1).note


def test_a_run_records_its_tuning_and_each_row_its_parameters(fake, tmp_path, monkeypatch):
    fake([0.002, 0.0002])
    fam = registry.TUNABLE["fake"]
    entry = registry.Algorithm("fake", "fake", "cpu", fam.supports, fam.prepare,
                               {"float32": 1e-5, "float64": 1e-12}, "tuned fake")
    config = sweep.preset("smoke")
    df = runner.run_sweep(config, results_dir=tmp_path / "r", entries=[entry], threads=1)
    meta = store.read_meta(df.attrs["run_dir"])
    assert meta["tuning"]["source"] == "defaults" and meta["tuning"]["params"] == {"fake": {}}
    assert meta["tuning"]["target"]["vector_bits"] in (128, 256, 512)
    ok = df[df["status"] == "ok"]
    assert list(ok["params"]) == ['{"d": 0}']
    df = runner.run_sweep(config, results_dir=tmp_path / "r", entries=[entry], threads=1,
                          retune=True)
    meta = store.read_meta(df.attrs["run_dir"])
    assert meta["tuning"]["source"] == "tuned" and meta["tuning"]["params"] == {"fake": {"d": 1}}
    assert list(df.loc[df["status"] == "ok", "params"]) == ['{"d": 1}']


def test_cli_tune_prints_each_familys_decision(fake, capsys):
    fake([0.002, 0.0003])
    assert cli.main(["tune", "--budget", "20", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fake: {d=1} runs") and "tuned on this machine" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["tune", "--budget", "0"], "--budget"),
    (["tune", "--budget", "x"], "--budget"),
    (["tune", "--family", "nope"], "'nope'"),
])
def test_cli_tune_bad_input(fake, args, needle, capsys):
    fake([0.001])
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
