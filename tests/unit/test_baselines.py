"""Baselines (PyTorch's conv2d, scipy.signal): registry entries, opt-in, reasons, the ratio
table against torch, and where the CLI and the report show it.

Nothing is compiled: the baselines are other libraries' code, and the ratio table, the CLI and
the report are checked on a synthetic run whose ratios are known exactly.
"""

import dataclasses
import importlib.util
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from convbench import analysis, baselines, cli, registry, report, runner, store, sweep
from convbench.spec import ConvSpec
from tests import fakes
from tests.unit.test_report import make_run, section, text

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed (extra "
                                                       "'baselines')")
FAST = sweep.TimingConfig(min_time=1e-3, values=2, max_seconds=1.0, warmups=0)


# ---------------------------------------------------------------------------------------------
# Registry

def test_entries_follow_what_is_installed(monkeypatch):
    real = importlib.util.find_spec

    def without_torch(name, *args, **kwargs):
        return None if name == "torch" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_torch)
    assert [a.name for a in registry.baseline_entries()] == ["scipy"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: object())
    entries = registry.baseline_entries()
    assert [a.name for a in entries] == ["torch", "scipy"]
    assert {(a.family, a.device, a.operator) for a in entries} == {("baseline", "cpu", "conv")}
    assert [a.default for a in entries] == [True, False]  # scipy is opt-in
    assert all(a.tolerance["float64"] < a.tolerance["float32"] for a in entries)


def test_registry_holds_the_installed_baselines():
    names = [a.name for a in registry.algorithms("cpu") if a.family == "baseline"]
    assert names == (["torch"] if HAS_TORCH else []) + ["scipy"]
    assert not any(a.family == "baseline" for a in registry.algorithms("cuda"))


def test_import_convbench_imports_neither_torch_nor_scipy_signal():
    code = ("import sys, convbench; convbench.algorithms(); "
            "print('torch' in sys.modules, 'scipy.signal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


# ---------------------------------------------------------------------------------------------
# Rows against the float64 reference, through the runner

MATCH = {
    "3x3 pad 1": ConvSpec(c=4, h=9, k=5, r=3, padding=1),
    "stride 2": ConvSpec(c=3, h=11, w=10, k=4, r=3, stride=2, padding=1),
    "stride (2,3) 1x5": ConvSpec(c=4, h=13, w=14, k=6, r=3, s=5, stride=(2, 3), padding=(1, 2)),
    "dilation 2": ConvSpec(c=4, h=12, k=4, r=3, dilation=2, padding=2),
    "groups 2": ConvSpec(c=8, h=9, k=6, r=3, groups=2, padding=1),
    "depthwise": ConvSpec(c=6, h=9, k=6, r=3, groups=6, padding=1),
    "even same stride 1": ConvSpec(c=4, h=10, k=6, r=4, padding="same"),
    "batch 2 valid 5x5": ConvSpec(n=2, c=3, h=12, k=7, r=5),
}
BASELINE_NAMES = (["torch"] if HAS_TORCH else []) + ["scipy"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", MATCH)
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_a_baseline_row_matches_its_reference(name, case, dtype):
    spec = MATCH[case].with_(dtype=dtype)
    algo = registry.get(name)
    assert algo.supports(spec) is None
    row = runner.run_case(spec, algo, runner._Problem(spec), FAST, 1 << 30, runner.devices.Host())
    assert row["status"] == "ok", row["reason"]
    assert row["family"] == "baseline" and row["accurate"], row["warnings"]
    assert row["max_rel_err"] <= algo.tolerance[dtype]
    assert row["median_s"] > 0 and row["n_values"] >= 1


@needs_torch
def test_torch_writes_every_element_of_out_and_leaves_inputs_alone():
    spec = ConvSpec(c=3, h=8, k=4, r=3, stride=2, padding=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec.input_shape).astype("f4")
    w = rng.standard_normal(spec.weight_shape).astype("f4")
    x0, w0 = x.copy(), w.copy()
    out = np.full(spec.output_shape, np.nan, "f4")
    registry.get("torch").prepare(w, spec)(x, out)
    assert np.isfinite(out).all() and (x == x0).all() and (w == w0).all()


# ---------------------------------------------------------------------------------------------
# What the baselines do not compute, and why

@pytest.mark.parametrize(("spec", "expected"), [
    (ConvSpec(c=5, h=8, w=7, k=4, r=3, padding=(0, 2, 1, 0)), "pads symmetrically"),
    (ConvSpec(c=4, h=11, k=3, r=2, padding="same", stride=2), "(0, 1, 0, 1)"),
])
def test_torch_refuses_asymmetric_padding_with_a_reason(spec, expected):
    reason = baselines.torch_supports(spec)
    assert reason is not None and expected in reason and "F.pad" in reason


def test_torch_takes_its_own_same_rule_at_stride_1():
    assert baselines.torch_supports(ConvSpec(c=4, h=10, k=6, r=4, padding="same")) is None
    assert baselines.torch_supports(
        ConvSpec(c=4, h=10, k=6, r=4, padding="same", dilation=3)) is None


def test_scipy_work_is_counted_exactly():
    # 2 images x 6 output channels x 4 input channels per group (groups 2): 48 calls, each
    # over the rows and columns the strided outputs read: oh = ow = 5 at stride 2 with a
    # 5-wide dilated filter (3x3, dilation 2) -> (5-1)*2 + 5 = 13 of the 14 (the last is cut),
    # 9x9 unstrided outputs, 25 taps each (the dilation's zeros included).
    spec = ConvSpec(n=2, c=8, h=14, k=6, r=3, stride=2, dilation=2, groups=2)
    assert (spec.oh, spec.ow) == (5, 5)
    assert baselines.scipy_work(spec) == (48, 48 * 9 * 9 * 25)


def test_scipy_refuses_big_problems_naming_the_bound():
    many = ConvSpec(c=128, h=4, k=128, r=1)  # 16384 calls
    reason = baselines.scipy_supports(many)
    assert reason is not None and "16384" in reason and str(baselines.SCIPY_MAX_PAIRS) in reason
    big = ConvSpec(c=64, h=56, k=64, r=3, padding=1)  # 4096 calls, 1.2e8 multiply-adds
    reason = baselines.scipy_supports(big)
    assert reason is not None and "multiply-adds" in reason and "2.5e+07" in reason
    assert baselines.scipy_supports(ConvSpec(c=32, h=28, k=32, r=3, padding=1)) is None


def test_scipy_is_opt_in(tmp_path):
    spec = ConvSpec(c=2, h=6, k=3, r=3, padding=1)
    entries = [fakes.entries()[0], registry.get("scipy")]
    config = sweep.SweepConfig(name="t", problems=(spec,), algorithms=None, timing=FAST)
    df = runner.run_sweep(config, results_dir=tmp_path / "a", entries=entries, threads=1)
    assert list(df["algorithm"]) == ["good"]
    toml = sweep.from_dict({"algorithms": ["direct", "scipy"], "problems": [{"id": spec.id}]})
    assert toml.algorithms == ("direct", "scipy")  # a sweep file may name it
    named = dataclasses.replace(config, algorithms=("good", "scipy"))
    df = runner.run_sweep(named, results_dir=tmp_path / "b", entries=entries, threads=1)
    assert list(df["algorithm"]) == ["good", "scipy"] and (df["status"] == "ok").all()
    assert bool(df["accurate"].all())


def test_list_shows_baselines_and_opt_in(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scipy = next(line for line in lines if line.startswith("scipy "))
    assert "baseline" in scipy and "(opt-in)" in scipy
    if HAS_TORCH:
        torch = next(line for line in lines if line.startswith("torch "))
        assert "baseline" in torch and "opt-in" not in torch and "oneDNN" in torch


# ---------------------------------------------------------------------------------------------
# The ratio table on a synthetic run

MS = 1e-3
LAYER_A = ConvSpec(c=8, h=8, k=8, r=3, padding=1, name="net:a")
LAYER_B = ConvSpec(c=8, h=8, k=16, r=1, name="net:b")
LAYER_C = ConvSpec(c=8, h=8, k=8, r=5, padding=2, name="net:c")
LAYER_D = ConvSpec(c=16, h=8, k=8, r=3, stride=2, padding=1, name="net:d", count=3)

FAMILY = {"direct": "direct", "im2col": "gemm", "fft": "fft", "separable": "separable",
          "torch": "baseline", "scipy": "baseline"}


def _row(spec, algo, ms=None, *, status="ok", accurate=True, device="cpu", simulated=False):
    row = {**runner.problem_columns(spec), "run_id": "synthetic", "algorithm": algo,
           "family": FAMILY[algo], "device": device, "simulated": simulated,
           "operator": "separable" if algo == "separable" else "conv", "threads": 2,
           "tolerance": 2e-5, "warnings": "", "reason": "", "status": status}
    if status != "ok":
        return {**row, "reason": "RuntimeError: no"}
    s = ms * MS
    return {**row, "accurate": accurate, "max_abs_err": 1e-6, "max_rel_err": 1e-7,
            "rel_l2_err": 5e-8, "compile_s": 0.0, "prepare_s": 1e-5, "median_s": s,
            "min_s": 0.98 * s, "q1_s": 0.99 * s, "q3_s": 1.01 * s, "std_s": 0.01 * s,
            "n_values": 5, "loops": 10, "values_s": [s] * 5, "gflops": spec.flops / s / 1e9,
            "workspace_bytes": 4096, "phases_s": ""}


def ratio_rows() -> pd.DataFrame:
    """Four layers.  a: torch 2 ms, direct 1 (0.5), im2col 4 (2), scipy 20 (10).
    b: torch 1, direct 2 (2), im2col 1.5 but inaccurate (not counted), fft 0.5 (0.5), and
    a simulated CUDA direct (not counted).  c: torch failed, so the layer has no line.
    d: torch 4, direct 4 (1), im2col 2 (0.5), separable 0.1 (another operator: not counted)."""
    return store.rows_frame([
        _row(LAYER_A, "direct", 1), _row(LAYER_A, "im2col", 4), _row(LAYER_A, "torch", 2),
        _row(LAYER_A, "scipy", 20),
        _row(LAYER_B, "direct", 2), _row(LAYER_B, "im2col", 1.5, accurate=False),
        _row(LAYER_B, "fft", 0.5), _row(LAYER_B, "torch", 1),
        _row(LAYER_B, "direct", 0.01, device="cuda", simulated=True),
        _row(LAYER_C, "direct", 1), _row(LAYER_C, "torch", status="error"),
        _row(LAYER_D, "direct", 4), _row(LAYER_D, "im2col", 2), _row(LAYER_D, "separable", 0.1),
        _row(LAYER_D, "torch", 4),
    ])


def test_baseline_ratios_exact():
    t = analysis.baseline_ratios(ratio_rows())
    nan = math.nan
    assert list(t.columns) == ["layer", "problem", "baseline_s", "direct", "im2col", "fft",
                               "scipy", "best convbench", "best_algorithm"]
    assert list(t["layer"]) == ["net:a", "net:b", "net:d", "geometric mean"]
    assert list(t["problem"]) == [LAYER_A.id, LAYER_B.id, LAYER_D.id, ""]
    np.testing.assert_allclose(t["baseline_s"], [2 * MS, 1 * MS, 4 * MS, nan], rtol=1e-12)
    expected = {  # layers a, b, d, then the geometric mean over the values present
        "direct": [0.5, 2.0, 1.0, 1.0],            # (0.5 * 2 * 1) ** (1/3)
        "im2col": [2.0, nan, 0.5, 1.0],            # (2 * 0.5) ** (1/2)
        "fft": [nan, 0.5, nan, 0.5],
        "scipy": [10.0, nan, nan, 10.0],
        "best convbench": [0.5, 0.5, 0.5, 0.5],    # a baseline (scipy) is never the best
    }
    for col, want in expected.items():
        np.testing.assert_allclose(t[col].astype(float), want, rtol=1e-12, err_msg=col)
    assert list(t["best_algorithm"]) == ["direct", "fft", "im2col", ""]


def test_baseline_ratios_without_a_counted_baseline_is_empty():
    rows = ratio_rows()
    assert analysis.baseline_ratios(rows[rows["algorithm"] != "torch"]).empty
    assert analysis.baseline_ratios(rows.iloc[0:0]).empty


def test_baselines_never_win_nor_cross_over():
    # torch is the fastest on every layer here; the winners are still convbench's own
    rows = ratio_rows()
    fast = rows["algorithm"] == "torch"
    for col in ("median_s", "min_s", "q1_s", "q3_s"):
        rows.loc[fast, col] = rows.loc[fast, col] * 1e-3
    win = analysis.winners(rows)
    assert "torch" not in set(win["winner"]) and "scipy" not in set(win["winner"])
    assert list(win["winner"]) == ["direct", "fft", "direct", "im2col"]
    assert not analysis.ranked(rows)["family"].eq("baseline").any()
    _, totals = analysis.network_summary(rows)
    assert not totals["algorithm"].isin(["torch", "scipy"]).any()


# ---------------------------------------------------------------------------------------------
# Where the table is shown: the CLI after a sweep, and the report

@pytest.fixture
def ratio_run(tmp_path):
    return make_run(tmp_path / "results", name="vs", rows=ratio_rows())


def test_cli_prints_the_ratio_table_after_a_sweep(ratio_run, tmp_path, monkeypatch, capsys):
    def fake_sweep(*args, **kwargs):
        df = store.load_run(ratio_run)
        df.attrs["run_dir"] = str(ratio_run)
        return df

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    assert cli.main(["run", "sweep", "--preset", "smoke", "--results-dir",
                     str(tmp_path / "results"), "--reports-dir", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    head = out.index("time / torch (oneDNN) per layer")
    lines = out[head:].splitlines()
    assert lines[1].split() == ["layer", "torch", "ms", "direct", "im2col", "fft",
                                "scipy.signal", "best", "convbench", "by"]
    assert lines[2].split() == ["net:a", "2.000", "0.50", "2.00", "-", "10.00", "0.50", "direct"]
    assert lines[3].split() == ["net:b", "1.000", "2.00", "-", "0.50", "-", "0.50", "fft"]
    assert lines[4].split() == ["net:d", "4.000", "1.00", "0.50", "-", "-", "0.50", "im2col"]
    assert lines[5].split() == ["geometric", "mean", "1.00", "1.00", "0.50", "10.00", "0.50"]


def test_cli_prints_no_ratio_table_without_torch_rows():
    rows = ratio_rows()
    assert cli.ratio_table(rows[rows["algorithm"] != "torch"]) == ""


def test_report_has_the_ratio_section_and_finding(ratio_run, tmp_path):
    html = report.write_report(ratio_run, tmp_path / "out").read_text(encoding="utf-8")
    assert '<a href="#baseline">' in html
    at = [html.index(f'<section id="{s}">') for s in ("winners", "baseline", "rows")]
    assert at == sorted(at)
    body = text(section(html, "baseline"))
    assert "Against torch (oneDNN)" in body
    for cell in ("net:a", "net:b", "net:d", "geometric mean", "10.00", "0.50", "2.00"):
        assert cell in body
    found = text(section(html, "findings"))
    assert ("Against torch (oneDNN): the best convbench algorithm per layer takes 0.50\u00d7 "
            "its time, faster on 3 of 3 layers (geometric mean 0.50\u00d7)") in found
    assert "torch (oneDNN)" in text(section(html, "rows"))


def test_report_without_torch_rows_has_no_ratio_section(tmp_path):
    rows = ratio_rows()
    run = make_run(tmp_path / "results", rows=rows[rows["algorithm"] != "torch"])
    html = report.write_report(run, tmp_path / "out").read_text(encoding="utf-8")
    assert '<section id="baseline">' not in html and "#baseline" not in html
