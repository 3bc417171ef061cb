"""The fleet report: runs of two machines (one of them faked) side by side."""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from convbench import cli, fleet, runner, store, sweep
from tests import fakes

MINE, OTHER = "thisnode-12345678", "othernode-0badc0de"


def _as_measured_on(src: Path, dst: Path, machine: str, slow: str) -> None:
    """A copy of run ``src`` as if measured on ``machine``, where ``slow`` took 1000 times
    longer on the 1x1 problem."""
    shutil.copytree(src, dst)
    meta = store.read_meta(dst)
    meta["machines"] = {machine: next(iter(meta["machines"].values()))}
    store.write_meta(dst, meta)
    rows = store.load_run(dst).assign(machine=machine)
    hit = (rows["algorithm"] == slow) & (rows["r"] == 1)
    for col in ("median_s", "min_s", "q1_s", "q3_s"):
        rows.loc[hit, col] = rows.loc[hit, col] * 1000
    store.write_rows(dst, rows)
    (dst / store.JOURNAL).unlink()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One filter sweep of ``good`` and ``picky`` (1x1 only) as measured on two machines: on
    ``here`` picky was slow on 1x1, on ``there`` good was: the 1x1 winner differs."""
    tmp = tmp_path_factory.mktemp("fleet")
    config = sweep.from_dict({
        "name": "fleet-test",
        "timing": {"min_time": 0.0005, "values": 3, "max_seconds": 0.2, "warmups": 1},
        "grid": {"n": [1], "c": [4], "k": [4], "h": [8], "filter": [1, 3, 5],
                 "stride": [1], "padding": ["same"]}})
    df = runner.run_sweep(config, results_dir=tmp, run_id="base", entries=fakes.entries()[:2],
                          threads=1, record=False)
    base = Path(df.attrs["run_dir"])
    _as_measured_on(base, tmp / "here", MINE, slow="picky")
    _as_measured_on(base, tmp / "there", OTHER, slow="good")
    return tmp / "here", tmp / "there", MINE


def test_two_runs_load_as_two_machines(runs):
    here, there, mine = runs
    df, machines = fleet.load([here, there])
    assert list(machines) == [mine, OTHER]
    assert df.groupby("machine").size().to_dict() == {mine: 6, OTHER: 6}


def test_the_winners_side_by_side_show_where_they_differ(runs):
    here, there, mine = runs
    table = fleet.side_by_side(fleet.load([here, there])[0])
    one = table[table["problem"].str.contains("r1s1")].iloc[0]
    assert one[f"winner:{OTHER}"] == "picky" and one[f"winner:{mine}"] != "picky"
    three = table[table["problem"].str.contains("r3s3")].iloc[0]
    assert three[f"winner:{OTHER}"] == three[f"winner:{mine}"] == "good"


def test_the_report_names_both_machines_and_the_moved_winner(runs, tmp_path, capsys):
    here, there, mine = runs
    assert cli.main(["report", str(here), str(there), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert mine in html and OTHER in html
    assert "The winner differs between machines on 1 of 3 problems." in html
    assert (tmp_path / f"winner_map-{OTHER}.png").exists()
    assert (tmp_path / f"roofline-{OTHER}.png").exists()


def test_a_one_machine_run_keeps_its_report(runs, tmp_path):
    here, _, _ = runs
    assert cli.main(["report", str(here), "--out", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "convbench fleet" not in html and "Findings" in html


def test_a_run_of_two_machines_gets_the_fleet_report(runs, tmp_path):
    """A cluster run: each problem ran once, on one machine or the other."""
    here, there, mine = runs
    merged = tmp_path / "merged"
    shutil.copytree(here, merged)
    meta = store.read_meta(merged)
    meta["machines"] = {**meta["machines"], **store.read_meta(there)["machines"]}
    store.write_meta(merged, meta)
    a, b = store.load_run(here), store.load_run(there)
    rows = pd.concat([a[a["r"] < 5], b[b["r"] == 5]], ignore_index=True)
    store.write_rows(merged, rows)
    assert fleet.machine_count(merged) == 2
    assert cli.main(["report", str(merged), "--out", str(tmp_path / "out")]) == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "convbench fleet: 2 machines" in html
    assert "The winner differs between machines on 0 of 3 problems." in html


def test_a_crossover_found_on_one_machine_only_is_reported(runs):
    here, there, mine = runs
    df, _ = fleet.load([here, there])
    # on this machine picky is slower than good at 1x1: make good lose at 3x3 and 5x5 to a
    # twin of itself, so that the twin overtakes good between filter 1 and 3 here only
    twin = df[df["algorithm"] == "good"].assign(algorithm="twin")
    slow = (twin["machine"] == OTHER) | (twin["r"] == 1)
    for col in ("median_s", "min_s", "q1_s", "q3_s"):
        twin.loc[slow, col] = twin.loc[slow, col] * 1000
        twin.loc[~slow, col] = twin.loc[~slow, col] / 1000
    moved = fleet.moved_crossovers(pd.concat([df, twin], ignore_index=True))
    row = moved[moved["algorithms"] == "good, twin"].iloc[0]
    assert row["machine"] == OTHER and row["change"] == "only in A"
    assert "twin overtakes good between filter 1 and 3" in row["a"] and row["b"] == ""
