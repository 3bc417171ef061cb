"""Two runs compared: changes beyond noise, moved winners and crossovers, the CLI's exit codes."""

import math

import numpy as np
import pytest

from convbench import cli, compare, store
from convbench.store import rows_frame
from tests.unit.test_analysis import frame, row, sweep

BASE = [1.00, 1.01, 0.99, 1.02, 0.98]  # five values, 2 % spread


def times(scale=1.0, values=BASE):
    return [v * scale for v in values]


def one(a_values, b_values, **kw):
    got = compare.compare(frame(row("direct", values=a_values)),
                          frame(row("direct", values=b_values)), **kw)
    assert len(got) == 1
    return got.iloc[0]


def test_a_2x_slowdown_is_a_change_with_a_small_p_value():
    c = one(times(), times(2.0))
    assert c["ratio"] == pytest.approx(2.0)
    assert c["test"] == "rank" and c["p_value"] == pytest.approx(2 / math.comb(10, 5))
    assert c["changed"] and c["direction"] == "slower"
    c = one(times(2.0), times())
    assert c["changed"] and c["direction"] == "faster" and c["ratio"] == pytest.approx(0.5)


def test_identical_distributions_are_not_a_change():
    c = one(times(), list(reversed(times())))
    assert c["ratio"] == 1.0 and c["p_value"] == pytest.approx(1.0)
    assert not c["changed"] and c["direction"] == "same"


def test_a_significant_change_under_the_threshold_or_the_noise_is_not():
    # 5 % slower, fully separated: the rank test rejects, the threshold decides
    assert one(times(), times(1.05), threshold=0.02)["changed"]
    assert not one(times(), times(1.05), threshold=0.10)["changed"]
    # 30 % slower, but the values spread over 80 % of the median
    wide = [0.6, 0.8, 1.0, 1.2, 1.4]
    c = one(wide, times(1.3, wide), threshold=0.0)
    assert c["floor"] == pytest.approx(0.4) and not c["changed"]


def test_a_shift_of_the_middle_values_only_is_not_significant():
    # the medians differ by 10 % with no spread between the quartiles, but the tails agree:
    # the rank test does not reject, so it is no change
    a = [0.5, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.9, 2.0]
    c = one(a, [0.5, 0.6, 1.1, 1.1, 1.1, 1.1, 1.1, 1.9, 2.0], threshold=0.0)
    assert c["ratio"] == pytest.approx(1.1) and c["floor"] == pytest.approx(0.01)
    assert c["test"] == "rank" and c["p_value"] > 0.05 and not c["changed"]


def test_too_few_values_leave_the_ratio_to_decide():
    c = one([1.0, 1.01], [2.0, 2.02])
    assert math.isnan(c["p_value"]) and c["test"] == "ratio" and c["changed"]
    # 3 against 3: a p-value, but never below 0.05 (at best 0.1), so the ratio decides
    c = one([1.0, 1.01, 0.99], [2.0, 2.02, 1.98])
    assert c["p_value"] == pytest.approx(0.1) and c["test"] == "ratio" and c["changed"]
    assert not one([1.0, 1.01], [1.005, 1.0])["changed"]


def test_only_cases_ok_in_both_are_compared_and_failures_are_status_changes():
    a = frame(row("direct", values=times()), row("fft", values=times()),
              row("im2col", values=times()), row("winograd_f23", status="unsupported"))
    b = frame(row("direct", values=times()), row("fft", status="error"),
              row("im2col", values=times(), accurate=False),
              row("winograd_f23", status="unsupported"))
    got = compare.compare(a, b)
    assert sorted(got["algorithm"]) == ["direct", "im2col"]
    # simulator times are not compared
    sim = frame(row("direct", values=times(), device="cuda", simulated=True))
    assert compare.compare(sim, frame(row("direct", values=times(2), device="cuda",
                                          simulated=True))).empty
    st = compare.status_changes(a, b)
    assert st[["algorithm", "status_a", "status_b", "regression"]].values.tolist() == [
        ["fft", "ok", "error", True], ["im2col", "ok", "ok", True]]


def test_moved_winners():
    a = frame(row("direct", 1.0, r=1), row("fft", 2.0, r=1),
              row("direct", 1.0, r=3), row("fft", 1.005, r=3))
    b = frame(row("direct", 2.0, r=1), row("fft", 1.0, r=1),
              row("direct", 1.005, r=3), row("fft", 1.0, r=3))
    got = compare.moved_winners(a, b)
    assert got[["winner_a", "winner_b", "within_noise"]].values.tolist() == [
        ["direct", "fft", False], ["direct", "fft", True]]
    assert compare.moved_winners(a, a).empty


def test_moved_crossovers():
    def run(cross_at):  # fft overtakes direct after filter `cross_at` (None: never)
        return frame(*sweep("r", {r: ({"direct": 1, "fft": 2} if cross_at is None or r <= cross_at
                                      else {"direct": 2, "fft": 1}) for r in (3, 5, 7, 9)}))

    assert compare.moved_crossovers(run(5), run(5)).empty
    got = compare.moved_crossovers(run(5), run(7))
    assert got[["axis", "algorithms", "change"]].values.tolist() == [["r", "direct, fft", "moved"]]
    assert "filter 5 and 7" in got.iloc[0]["a"] and "filter 7 and 9" in got.iloc[0]["b"]
    assert compare.moved_crossovers(run(5), run(None))["change"].tolist() == ["only in A"]
    assert compare.moved_crossovers(run(None), run(5))["change"].tolist() == ["only in B"]
    # a run that did not sweep the pair moves nothing
    only_direct = frame(*sweep("r", {3: {"direct": 1}, 5: {"direct": 1}}))
    assert compare.moved_crossovers(run(5), only_direct).empty


# -- the command line -------------------------------------------------------------------------

def _save(run_dir, rows):
    run_dir.mkdir(parents=True)
    store.write_rows(run_dir, rows_frame(rows))
    store.write_meta(run_dir, {"run_id": run_dir.name, "threads": 2, "machine": {}})
    return str(run_dir)


@pytest.fixture
def runs(tmp_path):
    def rows(scale):
        return [row("direct", values=times(scale), r=1), row("fft", values=times(), r=1),
                row("direct", values=times(), r=3), row("fft", values=times(), r=3)]

    return {"a": _save(tmp_path / "a", rows(1.0)), "same": _save(tmp_path / "same", rows(1.0)),
            "slower": _save(tmp_path / "slower", rows(2.0)),
            "a bit": _save(tmp_path / "a bit", rows(1.05)), "dir": tmp_path}


def test_cli_compare_exit_codes(runs, capsys):
    assert cli.main(["compare", runs["a"], runs["same"], "--fail"]) == 0
    assert "0 changed" in capsys.readouterr().out
    assert cli.main(["compare", runs["a"], runs["slower"]]) == 0  # reports, does not fail
    out = capsys.readouterr().out
    assert "1 changed" in out and "2.0" in out and "moved winners" in out
    assert cli.main(["compare", runs["a"], runs["slower"], "--fail"]) == 1
    capsys.readouterr()
    # 5 % slower: under the default 10 % threshold, over a 2 % one
    assert cli.main(["compare", runs["a"], runs["a bit"], "--fail"]) == 0
    assert cli.main(["compare", runs["a"], runs["a bit"], "--fail", "--threshold", "2"]) == 1


def test_cli_compare_values_survive_parquet(runs):
    df = store.load_run(runs["slower"])
    assert np.asarray(df["values_s"].iloc[0]).tolist() == pytest.approx(times(2.0))


@pytest.mark.parametrize("bad", ["missing", "--threshold"])
def test_cli_compare_bad_input_is_one_line_and_status_2(runs, capsys, bad):
    argv = (["compare", runs["a"], str(runs["dir"] / "missing")] if bad == "missing"
            else ["compare", runs["a"], runs["same"], "--threshold", "-5"])
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convbench: error:")
    assert ("missing" if bad == "missing" else "--threshold") in lines[0]
