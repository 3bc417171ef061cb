"""The roofline: the per-row formulas on hand-computed problems, the cache, the chart and the
report.  Nothing is measured or compiled here (tests/kernels/test_roofline_kernels.py runs
the two measuring kernels): runs read `tests.fakes.roofline` from the session's cache."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convbench import cache as cache_module
from convbench import plots, report, roofline, runner, store, sweep
from convbench.roofline import Roofline
from convbench.spec import ConvSpec
from tests import fakes

PNG = b"\x89PNG\r\n\x1a\n"
# 8 -> 16 channels, 3x3, 10x10, "same": 2·16·10·10·8·9 FLOPs; input 800, weights 1152,
# output 1600 elements.
SPEC = ConvSpec(c=8, h=10, k=16, r=3, padding=1)
FLOPS, MIN_BYTES = 230_400, (800 + 1152 + 1600) * 4
# The same problem as a depthwise one (groups = c = k = 8): 2·8·100·9 FLOPs; input 800,
# weights 72, output 800.
DW = ConvSpec(c=8, h=10, k=8, r=3, padding=1, groups=8)
DW_FLOPS, DW_BYTES = 14_400, (800 + 72 + 800) * 4


def roof(threads=2) -> Roofline:
    return fakes.roofline(threads)


def ok_row(median_s, **extra):
    return {"status": "ok", "device": "cpu", "operator": "conv", "median_s": median_s,
            "simulated": False, **extra}


# ---------------------------------------------------------------------------------------------
# Formulas

def test_counts_of_a_standard_convolution():
    assert SPEC.flops == FLOPS and SPEC.min_bytes == MIN_BYTES
    assert roofline.operator_flops(SPEC) == FLOPS
    assert roofline.compulsory_bytes(SPEC) == MIN_BYTES
    assert roofline.bytes_moved(SPEC, 1000) == MIN_BYTES + 2000
    assert roofline.footprint(SPEC, 1000) == MIN_BYTES + 1000
    assert roofline.bytes_moved(SPEC, 0) == MIN_BYTES


def test_counts_of_the_separable_operator():
    # depthwise 8 planes of 3x3 plus pointwise 8 -> 16, on 10x10 outputs
    assert roofline.operator_flops(SPEC, "separable") == 2 * 100 * (8 * 9 + 16 * 8) == 40_000
    assert roofline.compulsory_bytes(SPEC, "separable") == (800 + 72 + 128 + 1600) * 4
    assert roofline.bytes_moved(SPEC, 10, "separable") == 10_400 + 20


def test_intermediates_by_family():
    assert roofline.intermediate_bytes(SPEC, "gemm", 1234) == 1234
    assert roofline.intermediate_bytes(SPEC, "winograd", 99) == 99
    assert roofline.intermediate_bytes(DW, "depthwise", 1 << 30) == 0  # reused scratch
    # the depthwise output (8 channels of 10x10 floats) written, then read by the GEMM
    assert roofline.intermediate_bytes(SPEC, "separable", 1 << 30) == 800 * 4


def test_counts_of_a_depthwise_convolution_and_its_low_intensity():
    assert roofline.operator_flops(DW) == DW.flops == DW_FLOPS
    assert roofline.compulsory_bytes(DW) == DW.min_bytes == DW_BYTES
    # 2·r·s FLOPs per output against at least its own write and the read of one input
    # (2 · 4 bytes): under 18 / 8 FLOP per byte, even with no workspace
    assert DW_FLOPS / DW_BYTES < 18 / 8


def test_unknown_operator_is_a_value_error():
    with pytest.raises(ValueError, match="operator must be one of conv, separable"):
        roofline.operator_flops(SPEC, "winograd")


@pytest.mark.parametrize(("nbytes", "threads", "level"), [
    (1, 2, "L2"), (2 << 20, 2, "L2"), ((2 << 20) + 1, 2, "L3"), ((1 << 20) + 1, 1, "L3"),
    (32 << 20, 2, "L3"), ((32 << 20) + 1, 2, "DRAM"), (1 << 40, 1, "DRAM")])
def test_memory_level_is_the_nearest_that_holds_the_footprint(nbytes, threads, level):
    assert roofline.memory_level(nbytes, roof(threads)) == level


def test_row_columns_of_a_timed_row():
    cols = roofline.row_columns(SPEC, ok_row(1e-6, family="gemm"), 1000, roof())
    moved = MIN_BYTES + 2000
    assert cols["bytes_moved"] == moved
    assert cols["intensity"] == FLOPS / moved
    assert cols["memory_level"] == "L2"  # 15 208 bytes
    # 230 400 FLOPs in 1 us = 230.4 GFLOP/s against the fake float32 peak of 100
    assert cols["peak_fraction"] == pytest.approx(2.304, rel=1e-12)
    # 16 208 bytes in 1 us = 16.208 GB/s against the fake L2's 400
    assert cols["bandwidth_fraction"] == pytest.approx(16.208 / 400, rel=1e-12)


def test_row_columns_use_the_dtype_peak_and_the_level_bandwidth():
    spec = ConvSpec(c=8, h=10, k=16, r=3, padding=1, dtype="float64")
    big = 64 << 20  # the workspace pushes the footprint beyond the fake L3
    cols = roofline.row_columns(spec, ok_row(2e-3, family="fft"), big, roof())
    moved = 2 * MIN_BYTES + 2 * big
    assert cols["memory_level"] == "DRAM" and cols["bytes_moved"] == moved
    assert cols["peak_fraction"] == pytest.approx(FLOPS / 2e-3 / 1e9 / 50.0, rel=1e-12)
    assert cols["bandwidth_fraction"] == pytest.approx(moved / 2e-3 / 1e9 / 50.0, rel=1e-12)


def test_row_columns_of_a_separable_row_count_its_own_flops():
    row = ok_row(1e-6, operator="separable", family="separable")
    cols = roofline.row_columns(SPEC, row, 1 << 20, roof())
    assert cols["peak_fraction"] == pytest.approx(40_000 / 1e-6 / 1e9 / 100.0, rel=1e-12)
    assert cols["bytes_moved"] == 10_400 + 2 * 3200
    assert cols["intensity"] == 40_000 / 16_800
    assert cols["memory_level"] == "L2"  # 10 400 + 1 MiB, within 2 threads' L2


def test_row_columns_of_a_depthwise_row_count_the_compulsory_traffic():
    # 1 us for 6 688 bytes: 6.688 GB/s; the scratch counts in the footprint only
    cols = roofline.row_columns(DW, ok_row(1e-6, family="depthwise"), 3 << 20, roof())
    assert cols["bytes_moved"] == DW_BYTES and cols["memory_level"] == "L3"
    assert cols["intensity"] == DW_FLOPS / DW_BYTES
    assert cols["bandwidth_fraction"] == pytest.approx(6.688 / 200.0, rel=1e-12)


@pytest.mark.parametrize("row", [
    {"status": "unsupported", "device": "cpu"},
    {"status": "error", "device": "cpu"},
    {"status": "skipped", "device": "cpu"},
    ok_row(1e-3, device="cuda"),
    ok_row(1e-3, simulated=True),
    ok_row(None),
    ok_row(0.0)])
def test_rows_not_timed_on_this_cpu_get_missing_values(row):
    cols = roofline.row_columns(SPEC, row, 0, roof())
    assert set(cols) == set(roofline.ROW_COLUMNS)
    assert cols["bytes_moved"] is None and cols["memory_level"] is None
    assert all(math.isnan(cols[c]) for c in ("intensity", "peak_fraction",
                                             "bandwidth_fraction"))


def test_no_roofline_means_missing_values():
    assert math.isnan(roofline.row_columns(SPEC, ok_row(1e-3), 0, None)["peak_fraction"])


def test_roofline_round_trips_and_rejects_bad_records():
    r = roof()
    assert Roofline.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    bad = r.to_dict()
    bad["bandwidth_gbs"] = {"L2": 1.0}
    with pytest.raises(ValueError, match="levels must be L2, L3, DRAM"):
        Roofline.from_dict(bad)
    with pytest.raises(ValueError, match="not a roofline record"):
        Roofline.from_dict({"peak_gflops": 3})


def test_triad_sizes():
    assert roofline.triad_sizes(1 << 20, 32 << 20, 2) == {
        "L2": 1 << 20, "L3": 16 << 20, "DRAM": 256 << 20}
    assert roofline.triad_sizes(2 << 20, 96 << 20, 4)["DRAM"] == 8 * (96 << 20)


# ---------------------------------------------------------------------------------------------
# The cache

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache and a fake `measure` that counts its calls."""
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def measure(threads):
        calls.append(threads)
        return Roofline(**{**fakes.roofline(threads).to_dict(), "key": {},
                           "details": {"call": len(calls)}})

    monkeypatch.setattr(roofline, "measure", measure)
    return tmp_path / "cache", calls


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_module.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("CONVBENCH_CACHE_DIR")
    assert cache_module.cache_dir() == tmp_path / "x" / "convbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_module.cache_dir() == tmp_path / "home" / ".cache" / "convbench"


def test_a_measurement_on_a_busy_machine_is_used_but_never_cached(cache, monkeypatch):
    where, calls = cache
    monkeypatch.setattr(roofline.machine, "busy_reason",
                        lambda load: "other work used 1.4 of 2 cores while it was measured")
    roof, cached = roofline.load_or_measure(2)
    assert not cached and roof.details["busy"].startswith("other work used 1.4")
    assert not list(where.glob("roofline-*.json"))
    assert "busy machine (other work used 1.4 of 2 cores" in roofline.summary(roof)
    roofline.load_or_measure(2)
    assert calls == [2, 2]  # measured again: nothing was kept


@pytest.mark.parametrize(("other", "reason"), [
    (0.1, None),
    (None, None),          # an OS that does not say, or too short an interval
    (0.8, "other work used 0.8 of 2 cores"),
])
def test_busy_reason(other, reason):
    load = roofline.machine.OtherLoad()
    load.cores = other
    got = roofline.machine.busy_reason(load, cores=2)
    assert got == reason if reason is None else got.startswith(reason)


def test_other_load_counts_only_other_processes(monkeypatch):
    """The machine's busy seconds minus this process's own, over the wall time: with the
    machine's counter faked as this process's time plus ``other`` cores' worth of wall time
    (real time would count the other test workers running beside this one)."""
    import time

    machine = roofline.machine
    for other in (0.0, 1.0):
        start = time.perf_counter()
        monkeypatch.setattr(machine, "_cpu_seconds", lambda other=other, start=start: (
            time.process_time() + other * (time.perf_counter() - start)))
        with machine.OtherLoad() as load:
            sum(i * i for i in range(3_000_000))  # this process's own work
            time.sleep(machine.OtherLoad.MIN_SECONDS)
        assert load.cores == pytest.approx(other, abs=0.02)


def test_a_miss_measures_and_stores_then_a_hit_reads(cache):
    where, calls = cache
    first, cached = roofline.load_or_measure(2)
    assert not cached and calls == [2] and first.details["cached"] is False
    (path,) = where.glob("roofline-*.json")
    assert first.key == roofline.cache_key(2)  # stored under the real key, not measure's
    again, cached = roofline.load_or_measure(2)
    assert cached and calls == [2] and again.details["cached"] is True
    assert again.peak_gflops == first.peak_gflops and again.key == first.key
    assert json.loads(path.read_text())["key"] == roofline.cache_key(2)


def test_a_corrupt_entry_is_measured_over_and_rewritten(cache):
    where, calls = cache
    roofline.load_or_measure(2)
    (path,) = where.glob("roofline-*.json")
    for junk in ("{not json", json.dumps({"peak_gflops": "x"}), ""):
        path.write_text(junk)
        roof_, cached = roofline.load_or_measure(2)
        assert not cached
        assert Roofline.from_dict(json.loads(path.read_text())).key == roofline.cache_key(2)
    assert len(calls) == 4


def test_a_key_change_measures_again(cache, monkeypatch):
    where, calls = cache
    roofline.load_or_measure(2)
    roofline.load_or_measure(1)  # threads are part of the key
    assert calls == [2, 1] and len(list(where.glob("roofline-*.json"))) == 2
    real = roofline.cache_key
    monkeypatch.setattr(roofline, "cache_key", lambda t: {
        **real(t), "blas": [{"internal_api": "openblas", "version": "0.3.30",
                             "architecture": "Haswell"}]})  # OPENBLAS_CORETYPE=Haswell
    roofline.load_or_measure(2)
    assert calls == [2, 1, 2]


def test_an_entry_whose_key_differs_from_its_file_name_is_not_trusted(cache):
    where, calls = cache
    roofline.load_or_measure(2)
    (path,) = where.glob("roofline-*.json")
    data = json.loads(path.read_text())
    data["key"]["numba"] = "0.0.1"
    path.write_text(json.dumps(data))
    assert roofline.load_or_measure(2)[1] is False and len(calls) == 2


def test_remeasure_ignores_the_cache(cache):
    _, calls = cache
    roofline.load_or_measure(2)
    assert roofline.load_or_measure(2, remeasure=True)[1] is False
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------
# Through the runner (the session's cache holds the fake roofline)

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return runner.run_sweep(sweep.preset("smoke"), results_dir=tmp_path_factory.mktemp("r"),
                            entries=fakes.entries(), threads=1)


def test_the_run_records_the_roofline_it_used(run):
    meta = store.read_meta(Path(run.attrs["run_dir"]))
    assert Roofline.from_dict(meta["roofline"]).peak_gflops == fakes.ROOF_PEAK
    assert meta["roofline"]["details"]["cached"] is True
    assert meta["roofline"]["threads"] == 1


def test_every_timed_row_gets_its_fractions(run):
    ok = run[(run["status"] == "ok") & (run["device"] == "cpu")]
    assert len(ok)
    r = roof(1)
    for _, row in ok.iterrows():
        moved = int(row["min_bytes"])  # the fake entries give no workspace estimate
        assert row["bytes_moved"] == moved
        assert row["intensity"] == pytest.approx(row["flops"] / moved, rel=1e-12)
        level = roofline.memory_level(moved, r)
        assert row["memory_level"] == level
        assert row["peak_fraction"] == pytest.approx(
            row["gflops"] / fakes.ROOF_PEAK[row["dtype"]], rel=1e-12)
        assert row["bandwidth_fraction"] == pytest.approx(
            moved / row["median_s"] / 1e9 / fakes.ROOF_BANDWIDTH[level], rel=1e-12)
    rest = run[run["status"] != "ok"]
    assert rest["peak_fraction"].isna().all() and rest["bandwidth_fraction"].isna().all()
    assert rest["memory_level"].isna().all()


def test_a_resumed_run_keeps_its_roofline(tmp_path):
    df = runner.run_sweep(sweep.preset("smoke"), results_dir=tmp_path, run_id="r",
                          entries=fakes.entries()[:1], threads=1)
    meta = store.read_meta(tmp_path / "r")
    meta["roofline"]["peak_gflops"]["float32"] = 7.0  # as if measured differently back then
    store.write_meta(tmp_path / "r", meta)
    journal = tmp_path / "r" / store.JOURNAL
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:1]) + "\n")  # a run killed after its first row
    again = runner.run_sweep(resume=tmp_path / "r", entries=fakes.entries()[:1], threads=1)
    assert len(again) == len(df)
    later = again.iloc[1:]
    assert later["peak_fraction"].to_numpy() == pytest.approx(
        (later["gflops"] / 7.0).to_numpy(), rel=1e-12)


def test_a_failed_measurement_leaves_the_fractions_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVBENCH_CACHE_DIR", str(tmp_path / "empty"))

    def broken(threads):
        raise RuntimeError("no BLAS")

    monkeypatch.setattr(roofline, "measure", broken)
    df = runner.run_sweep(sweep.preset("smoke"), results_dir=tmp_path, run_id="r",
                          entries=fakes.entries()[:1], threads=1)
    assert (df["status"] == "ok").all() and df["peak_fraction"].isna().all()
    assert store.read_meta(tmp_path / "r")["roofline"] == {"error": "RuntimeError: no BLAS"}


def test_an_old_run_loads_with_the_new_columns_missing(tmp_path):
    rows = store.rows_frame([{"problem": "p", "name": "", "algorithm": "a", "device": "cpu",
                              "status": "ok"}])
    store.write_rows(tmp_path, rows.drop(columns=list(roofline.ROW_COLUMNS)))
    store.write_meta(tmp_path, {"run_id": "old"})
    df = store.load_run(tmp_path)
    assert set(roofline.ROW_COLUMNS) <= set(df.columns)
    assert df["peak_fraction"].isna().all() and str(df["memory_level"].dtype) == "string"


# ---------------------------------------------------------------------------------------------
# Chart and report

def synthetic_rows() -> pd.DataFrame:
    """Timed rows on three problems, with the columns the runner would give them."""
    from tests.unit.test_report import synthetic_rows as rows_of_report

    df = rows_of_report()
    r = roof(2)
    cols = []
    for _, row in df.iterrows():
        spec = ConvSpec(n=int(row["n"]), c=int(row["c"]), h=int(row["h"]), w=int(row["w"]),
                        k=int(row["k"]), r=int(row["r"]), s=int(row["s"]),
                        stride=(int(row["sh"]), int(row["sw"])),
                        padding=(int(row["pt"]), int(row["pb"]), int(row["pl"]),
                                 int(row["pr"])), groups=int(row["groups"]),
                        dtype=str(row["dtype"]))
        cols.append(roofline.row_columns(spec, row.to_dict(), 4096 * spec.r * spec.s, r))
    extra = pd.DataFrame(cols, index=df.index)
    return store.rows_frame(pd.concat([df.drop(columns=[c for c in extra if c in df]), extra],
                                      axis=1).to_dict("records"))


def test_synthetic_rows_carry_the_columns():
    df = synthetic_rows()
    ok = df[df["status"] == "ok"]
    assert ok["intensity"].notna().all() and (ok["peak_fraction"] > 0).all()


def test_the_chart_renders(tmp_path):
    df = synthetic_rows()
    path = plots.roofline(df, tmp_path / "roofline.png", roof().to_dict())
    assert path == tmp_path / "roofline.png"
    assert path.stat().st_size > 10_000 and path.read_bytes().startswith(PNG)


def test_no_chart_without_a_roofline_or_its_columns(tmp_path):
    df = synthetic_rows()
    assert plots.roofline(df, tmp_path / "a.png", None) is None
    assert plots.roofline(df, tmp_path / "b.png", {"error": "RuntimeError: x"}) is None
    old = df.drop(columns=list(roofline.ROW_COLUMNS))
    assert plots.roofline(old, tmp_path / "c.png", roof()) is None
    assert list(tmp_path.glob("*.png")) == []


def test_write_charts_puts_the_roofline_after_the_gflops_chart(tmp_path):
    names = [p.name for p, _ in plots.write_charts(synthetic_rows(), tmp_path, roof())]
    assert names[names.index("gflops_vs_filter.png") + 1] == "roofline.png"
    assert "roofline.png" not in [p.name for p, _ in plots.write_charts(synthetic_rows(),
                                                                        tmp_path / "x")]


def test_the_report_shows_the_chart_the_ceilings_and_the_fractions(tmp_path):
    from tests.unit.test_report import make_run

    run_dir = make_run(tmp_path / "results", rows=synthetic_rows())
    meta = store.read_meta(run_dir)
    meta["roofline"] = {**roof().to_dict(), "details": {"cached": True}}
    store.write_meta(run_dir, meta)
    path = report.write_report(run_dir, tmp_path / "out")
    html = path.read_text(encoding="utf-8")
    assert (path.parent / "roofline.png").stat().st_size > 0
    assert "(roofline.png)" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == len(
        list(path.parent.glob("*.png")))
    assert ("Machine ceilings at 2 threads (from the cache): peak GEMM 100 GFLOP/s float32, "
            "50 GFLOP/s float64") in html
    assert "L2 400, L3 200, DRAM 50 GB/s" in html
    assert "% of peak" in html and "% of bandwidth" in html
    row = synthetic_rows().query("status == 'ok'").iloc[0]
    assert report._percent(row["peak_fraction"]) in html
    # the report of the same run without a roofline drops the chart file it wrote before
    del meta["roofline"]
    store.write_meta(run_dir, meta)
    report.write_report(run_dir, tmp_path / "out")
    assert not (path.parent / "roofline.png").exists()


def test_the_depthwise_sentence():
    rows = pd.DataFrame({
        "status": ["ok", "ok", "ok", "unsupported"],
        "family": ["depthwise", "depthwise", "direct", "depthwise"],
        "bandwidth_fraction": [0.25, 0.5, 0.9, np.nan],
        "memory_level": ["L3", "L2", "L2", None],
        "intensity": [1.0, 2.0, 30.0, np.nan]})
    text = roofline.sentences(rows, roof())
    assert text[0].startswith("Machine ceilings at 2 threads (measured at the start")
    assert text[1] == ("Depthwise, judged by bandwidth: its 2 measured rows (1 in L2, 1 in L3) "
                       "move data at 25-50% (median 38%) of the measured bandwidth of the "
                       "level their data fits in, at 1.5 FLOP/byte (median).")
    assert roofline.sentences(rows, None) == []
    assert roofline.sentences(rows, {"error": "x"}) == []


def test_a_family_far_from_its_limit_gets_a_finding():
    def row(family, peak, bw, status="ok", **kw):
        return {"family": family, "status": status, "accurate": True, "device": "cpu",
                "operator": "conv", "peak_fraction": peak, "bandwidth_fraction": bw, **kw}

    df = pd.DataFrame([row("direct", 0.2, 0.1), row("direct", 0.3, 0.6),   # 0.2, 0.6
                       row("direct", 0.4, 0.05),                            # 0.4: median
                       row("depthwise", 0.01, 0.7), row("depthwise", 0.02, 0.55),
                       row("baseline", 0.1, 0.1), row("fft", 0.1, 0.1, accurate=False)])
    got = roofline.far_from_limit(df)
    assert got == ["direct runs at a median 40% of its roofline bound (the machine's peak, or "
                   "the bandwidth of the memory level its data fits in) over its 3 measured "
                   "rows, under the 50% this report calls near its limit: the crossovers it "
                   "is part of may move with a better kernel."]
    assert roofline.far_from_limit(df.iloc[3:5]) == []
