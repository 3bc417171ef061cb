"""The choice database and ``algo="auto"``: round trip, keys, concurrent writers, corrupt files,
winners that do not flip within noise, accuracy first, the modes of a miss, the CLI."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import convbench
from convbench import cache, choices, cli, runner, sweep
from convbench.spec import ConvSpec
from tests import fakes

THREADS = 2
SPEC = ConvSpec(c=3, h=6, k=4, r=3, padding=1)


@pytest.fixture(autouse=True)
def db(fresh_choices):
    return fresh_choices


def rows(times, problem="p1", threads=THREADS, spread=0.01, inaccurate=()):
    """Sweep-like rows: one per algorithm with median ``times[algo]`` and quartiles
    ``median * (1 -+ spread)``."""
    return pd.DataFrame([{
        "problem": problem, "name": "", "dtype": "float32", "device": "cpu",
        "threads": threads, "algorithm": a, "family": "f", "operator": "conv",
        "status": "ok", "accurate": a not in inaccurate, "simulated": False,
        "median_s": t, "q1_s": t * (1 - spread), "q3_s": t * (1 + spread)}
        for a, t in times.items()])


def entry(problem="p1"):
    return choices.table(THREADS)[choices.entry_key(problem, "cpu", THREADS)]


def test_round_trip_through_the_file():
    assert choices.record_rows(rows({"a": 1.0, "b": 2.0, "c": 1.5})) == []
    choices._TABLES.clear()  # read back from disk
    e = entry()
    assert e["winner"] == "a" and e["lead"] == pytest.approx(1.5) and e["decisive"]
    assert set(e["times"]) == {"a", "b", "c"} and e["times"]["b"]["median_s"] == 2.0
    assert e["source"] == "sweep" and e["dtype"] == "float32"


def test_an_inaccurate_algorithm_never_wins():
    choices.record_rows(rows({"fast": 0.1, "slow": 1.0}, inaccurate={"fast"}))
    assert entry()["winner"] == "slow" and set(entry()["times"]) == {"slow"}


def test_a_lead_within_noise_keeps_the_winner_and_says_so():
    choices.record_rows(rows({"a": 1.0, "b": 1.2}))
    notes = choices.record_rows(rows({"b": 0.98}, spread=0.05))
    assert entry()["winner"] == "a" and not entry()["decisive"]
    assert len(notes) == 1 and "kept a" in notes[0] and "within noise" in notes[0]
    notes = choices.record_rows(rows({"b": 0.5}))
    assert entry()["winner"] == "b" and entry()["decisive"]
    assert notes == ["p1 on cpu: winner changed from a to b"]


def test_another_machine_key_is_not_used(monkeypatch):
    choices.record_rows(rows({"a": 1.0, "b": 2.0}))
    real = cache.machine_key
    monkeypatch.setattr(cache, "machine_key", lambda t: {**real(t), "convbench": "9.9"})
    choices._TABLES.clear()
    with pytest.warns(choices.ChoicesWarning, match="other keys are not used"):
        assert choices.table(THREADS) == {}


def test_a_corrupt_file_is_set_aside_and_rebuilt(db):
    choices.record_rows(rows({"a": 1.0}))
    file, _ = choices._file(THREADS)
    file.write_text('{"format": 1, "key": ')  # a torn write
    choices._TABLES.clear()
    with pytest.warns(choices.ChoicesWarning, match="not readable JSON.*rebuilt"):
        choices.record_rows(rows({"b": 1.0}, problem="p2"))
    assert set(json.loads(file.read_text())["entries"]) == {f"p2|cpu|{THREADS}"}


WRITER = """
import sys, pandas as pd
from convbench import choices
tag = sys.argv[1]
for i in range(15):
    choices.record_rows(pd.DataFrame([{"problem": f"{tag}{i}", "name": "", "dtype": "float32",
        "device": "cpu", "threads": 2, "algorithm": "a", "family": "f", "operator": "conv",
        "status": "ok", "accurate": True, "simulated": False, "median_s": 1.0, "q1_s": 1.0,
        "q3_s": 1.0}]))
"""


def test_two_processes_writing_at_once_lose_nothing(db):
    env = {**os.environ, "CONVBENCH_CACHE_DIR": str(db)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, tag], env=env) for tag in "xy"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    keys = set(choices.table(THREADS))
    assert keys == {f"{t}{i}|cpu|{THREADS}" for t in "xy" for i in range(15)}


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(choices.numba, "get_num_threads", lambda: THREADS)


def arrays(spec=SPEC):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(spec.input_shape).astype(np.float32),
            rng.standard_normal(spec.weight_shape).astype(np.float32))


def test_auto_hits_the_database(two_threads):
    choices.record_rows(rows({"im2col": 1.0, "direct": 2.0}, problem=SPEC.id))
    x, w = arrays()
    y = convbench.conv2d(x, w, padding=1, algo="auto", auto_mode="db-only")
    assert convbench.last_choice().algorithm == "im2col"
    assert convbench.last_choice().source == "database"
    np.testing.assert_allclose(y, convbench.reference_conv2d(x, w, padding=1), atol=1e-4)


def test_auto_db_only_miss_is_an_error(two_threads, monkeypatch):
    x, w = arrays()
    monkeypatch.setenv("CONVBENCH_AUTO", "db-only")
    with pytest.raises(ValueError, match="no recorded choice .* db-only"):
        convbench.conv2d(x, w, padding=1, algo="auto")
    monkeypatch.setenv("CONVBENCH_AUTO", "guess")
    with pytest.raises(ValueError, match=r"CONVBENCH_AUTO: unknown mode 'guess' \(allowed: "
                                         r"measure, predict, db-only\)"):
        convbench.conv2d(x, w, padding=1, algo="auto")


def test_auto_measure_miss_records_only_accurate_algorithms(two_threads, monkeypatch):
    fake = fakes.entries()
    monkeypatch.setattr(choices.registry, "algorithms", lambda device=None: fake)
    monkeypatch.setattr(choices.registry, "get", lambda name, device="cpu": next(
        a for a in fake if a.name == name))
    monkeypatch.setenv("CONVBENCH_AUTO_BUDGET", "0.05")
    x, w = arrays()
    convbench.conv2d(x, w, padding=1, algo="auto")
    c = convbench.last_choice()
    assert c.source == "measured" and c.algorithm == "good"
    # "off" (1 % off) and "zeros" ran but were inaccurate, "raises" failed, "picky" refused
    # the problem and "hungry" the memory budget
    assert set(choices.table(THREADS)[choices.entry_key(SPEC.id, "cpu", THREADS)]["times"]) \
        == {"good"}
    convbench.conv2d(x, w, padding=1, algo="auto")
    assert convbench.last_choice().source == "database"


def test_a_completed_sweep_records_its_rows(tmp_path):
    fakes.prepare_roofline_cache(1)  # the private cache directory has none: measure nothing
    config = sweep.SweepConfig(name="t", problems=(SPEC,), algorithms=None,
                               timing=sweep.TimingConfig(min_time=0.001, values=3))
    df = runner.run_sweep(config, results_dir=tmp_path / "r", entries=fakes.entries()[:2],
                          threads=1)
    assert df.attrs["choices"] == []
    assert choices.table(1)[choices.entry_key(SPEC.id, "cpu", 1)]["winner"] == "good"
    runner.run_sweep(config, results_dir=tmp_path / "r2", entries=fakes.entries()[:2],
                     threads=1, record=False)  # nothing new: no notes, no failure


def test_cli_show_export_import_clear(tmp_path, capsys):
    assert cli.main(["choices", "show", "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none recorded" in err
    choices.record_rows(rows({"a": 1.0, "b": 1.5}))
    assert cli.main(["choices", "show", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "p1" in out and " a " in out and "1.50x" in out
    file = tmp_path / "c.parquet"
    assert cli.main(["choices", "export", str(file), "--threads", "2"]) == 0
    assert cli.main(["choices", "clear", "--threads", "2"]) == 0
    assert "cleared 1 choices" in capsys.readouterr().out
    assert choices.table(THREADS) == {}
    assert cli.main(["choices", "import", str(file), "--threads", "2"]) == 0
    assert entry()["winner"] == "a" and entry()["source"] == "import"
    capsys.readouterr()
    # another machine key's export, a file that is no export, a missing FILE: one line, 2
    other = pd.read_parquet(file).assign(key="{}")
    other.to_parquet(tmp_path / "other.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    for argv in (["import", str(tmp_path / "other.parquet")],
                 ["import", str(tmp_path / "junk.parquet")], ["export"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cli.main(["choices", *argv, "--threads", "2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("convbench: error:") and "\n" not in err


def test_auto_measure_on_the_cuda_simulator_says_why_it_cannot_choose(two_threads,
                                                                     monkeypatch):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("a real GPU: its times can be recorded")
    monkeypatch.setenv("CONVBENCH_AUTO_BUDGET", "0.01")
    spec = ConvSpec(c=2, h=5, k=2, r=3, padding=1)
    x, w = arrays(spec)
    with pytest.raises(ValueError, match="CUDA simulator"):
        convbench.conv2d(x, w, padding=1, algo="auto", device="cuda", auto_mode="measure")


def test_separable_auto_chooses_each_stage(two_threads):
    c, m, k = 3, 2, 5
    spec_dw = ConvSpec(c=c, h=6, k=c * m, r=3, padding=1, groups=c)
    spec_pw = ConvSpec(c=c * m, h=6, k=k, r=1)
    choices.record_rows(rows({"depthwise": 1.0, "direct": 2.0}, problem=spec_dw.id))
    choices.record_rows(rows({"direct": 1.0, "im2col": 3.0}, problem=spec_pw.id))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, c, 6, 6)).astype(np.float32)
    wd = rng.standard_normal((c * m, 1, 3, 3)).astype(np.float32)
    wp = rng.standard_normal((k, c * m, 1, 1)).astype(np.float32)
    y = convbench.separable_conv2d(x, wd, wp, padding=1, algo="auto", auto_mode="db-only")
    np.testing.assert_allclose(y, convbench.separable_conv2d(x, wd, wp, padding=1), atol=1e-4)
    got = convbench.last_choice()
    assert got.algorithm == "depthwise+direct" and got.source == "database+database"
    assert [s.problem for s in got.stages] == [spec_dw.id, spec_pw.id]
    assert spec_dw.id in got.why and spec_pw.id in got.why
    with pytest.raises(ValueError, match=r"algo: unknown value 'direct' .*allowed: separable, "
                                         r"auto"):
        convbench.separable_conv2d(x, wd, wp, padding=1, algo="direct")


def test_auto_on_cuda_runs_the_recorded_cuda_winner(two_threads):
    spec = ConvSpec(c=2, h=5, k=3, r=3, padding=1)
    cuda_rows = rows({"im2col": 1.0, "direct": 2.0}, problem=spec.id).assign(device="cuda")
    choices.record_rows(cuda_rows)
    choices.record_rows(rows({"direct": 1.0, "im2col": 2.0}, problem=spec.id))
    x, w = arrays(spec)
    y = convbench.conv2d(x, w, padding=1, algo="auto", device="cuda", auto_mode="db-only")
    got = convbench.last_choice()
    assert (got.algorithm, got.device, got.source) == ("im2col", "cuda", "database")
    np.testing.assert_allclose(y, convbench.reference_conv2d(x, w, padding=1), atol=1e-4)
    convbench.conv2d(x, w, padding=1, algo="auto", auto_mode="db-only")
    assert (convbench.last_choice().algorithm, convbench.last_choice().device) == ("direct",
                                                                                   "cpu")
