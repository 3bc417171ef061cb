"""The analysis layer on synthetic rows whose answers are known by construction."""

import math

import numpy as np
import pandas as pd
import pytest

from convbench import analysis
from convbench.runner import problem_columns
from convbench.spec import ConvSpec
from convbench.store import rows_frame


def row(algorithm="direct", t=1.0, spread=0.0, *, q=None, values=None, status="ok",
        accurate=True, operator=None, device="cpu", simulated=False, **problem):
    """One result row as the runner writes it: `algorithm` on ``ConvSpec(**problem)``
    (default 32 -> 32 channels at 16x16, 3x3, stride 1, 'same').  Timed rows have median `t`
    and quartiles ``t * (1 -/+ spread / 2)`` (or `q`), or the statistics of `values`."""
    spec = ConvSpec(**{"c": 32, "k": 32, "h": 16, "r": 3, "padding": "same", **problem})
    out = {**problem_columns(spec), "algorithm": algorithm, "family": algorithm,
           "device": device, "status": status, "simulated": simulated,
           "operator": operator or ("separable" if algorithm == "separable" else "conv")}
    if status != "ok":
        return out
    if values is not None:
        t = float(np.median(values))
        q = tuple(np.percentile(values, [25, 75]))
    q1, q3 = q if q is not None else (t * (1 - spread / 2), t * (1 + spread / 2))
    vals = list(values) if values is not None else [q1, t, q3]
    return {**out, "accurate": accurate, "median_s": t, "q1_s": q1, "q3_s": q3,
            "values_s": vals, "n_values": len(vals), "gflops": spec.flops / t / 1e9}


def frame(*rows):
    return rows_frame(list(rows))


def sweep(axis, times, **fixed):
    """Rows along one axis: ``times = {value: {algorithm: seconds}}``; the filter axis sets
    r (and so s), the stride and image axes their square pair."""
    field = {"r": "r", "sh": "stride", "h": "h"}.get(axis, axis)
    return [row(algo, t, **{field: x, **fixed}) for x, ts in times.items()
            for algo, t in ts.items()]


# -- noise and ties ---------------------------------------------------------------------------

def test_noise_is_iqr_over_median_with_a_floor():
    df = frame(row("direct", 2.0, q=(1.8, 2.4)), row("fft", 1.0, spread=0.001),
               row("im2col", status="unsupported"))
    assert analysis.noise(df.iloc[0]) == pytest.approx(0.3)
    assert analysis.noise(df.iloc[1]) == analysis.NOISE_FLOOR
    got = analysis.noise(df)
    assert isinstance(got, pd.Series)
    assert got.tolist() == pytest.approx([0.3, analysis.NOISE_FLOOR, analysis.NOISE_FLOOR])


# -- winners ----------------------------------------------------------------------------------

def test_a_faster_inaccurate_row_never_wins():
    df = frame(row("direct", 1.0), row("im2col", 0.5, accurate=False), row("fft", 2.0),
               row("separable", 0.1), row("winograd_f23", status="error"))
    w = analysis.winners(df)
    assert len(w) == 1
    best = w.iloc[0]
    assert best["winner"] == "direct"
    assert best["median_s"] == 1.0
    assert best["runner_up"] == "fft" and best["runner_up_ratio"] == pytest.approx(2.0)
    assert best["ties"] == "" and best["n_ranked"] == 2
    assert (best["c"], best["k"], best["h"], best["r"], best["sh"], best["groups"],
            best["dtype"]) == (32, 32, 16, 3, 1, 1, "float32")
    assert best["gflops"] == pytest.approx(df.iloc[0]["flops"] / 1e9)


def test_simulator_times_never_win_and_gpu_rows_are_labelled():
    df = frame(row("direct", 1.0), row("direct", 0.5, device="cuda", simulated=True),
               row("im2col", 0.8, device="cuda"))
    best = analysis.winners(df).iloc[0]
    assert (best["winner"], best["runner_up"], best["n_ranked"]) == ("im2col@cuda", "direct", 2)
    assert "direct@cuda" not in analysis.ratios(df, "direct")["label"].tolist()


def test_ties_within_noise_or_overlapping_quartiles():
    df = frame(
        row("direct", 1.0, q=(0.9, 1.3)),              # noise 0.4
        row("im2col", 1.003, spread=0.0),               # ratio 1.003 < 1 + 0.4: tied
        row("fft", 1.5, q=(1.25, 1.6)),                 # ratio 1.5 > 1.4 but [q1, q3] overlap
        row("winograd_f23", 1.5, q=(1.45, 1.55)),       # neither: decisively slower
        row("winograd_f43", 1.39, q=(1.38, 1.4)),       # ratio 1.39 < 1.4: tied
    )
    best = analysis.winners(df).iloc[0]
    assert best["winner"] == "direct"
    assert best["ties"] == "im2col, winograd_f43, fft"
    assert best["runner_up"] == "im2col"


def test_winners_one_row_per_problem_and_layer_name():
    df = frame(row("direct", 1.0, r=1), row("fft", 2.0, r=1),
               row("direct", 3.0, r=5), row("fft", 2.0, r=5),
               row("direct", 3.0, r=5, name="net:a", count=4), row("fft", 2.0, r=5, name="net:a",
                                                                    count=4))
    w = analysis.winners(df)
    assert w[["r", "name", "winner", "count"]].values.tolist() == [
        [1, "", "direct", 1], [5, "", "fft", 1], [5, "net:a", "fft", 4]]
    table = analysis.winners_table(df)
    assert table["winner"].tolist() == ["direct", "fft", "fft"]
    assert table["problem"].tolist()[2] == "net:a"


def test_winners_of_nothing_ranked_is_empty_with_columns():
    w = analysis.winners(frame(row("direct", 1.0, accurate=False)))
    assert w.empty and list(w.columns) == analysis.WINNER_COLUMNS


# -- crossovers -------------------------------------------------------------------------------

def _pairs(cx):
    return [(c.axis, c.lo, c.hi, c.before, c.after) for c in cx.itertuples()]


def test_no_crossover():
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 3}, 3: {"direct": 2, "fft": 4},
                            5: {"direct": 3, "fft": 5}}))
    cx = analysis.crossovers(df)
    assert cx.empty and list(cx.columns) == analysis.CROSSOVER_COLUMNS


def test_one_crossover_along_the_filter_and_its_sentence():
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 4}, 3: {"direct": 2, "fft": 4},
                            5: {"direct": 4, "fft": 2}, 7: {"direct": 8, "fft": 2}}))
    cx = analysis.crossovers(df)
    assert _pairs(cx) == [("r", 3, 5, "direct", "fft")]
    c = cx.iloc[0]
    assert c["axis_label"] == "filter"
    assert c["context"] == "stride 1, 32→32 channels, 16x16"
    assert c["sentence"] == ("fft overtakes direct between filter 3 and 5 at stride 1, "
                             "32→32 channels, 16x16")
    assert c["ratio_lo"] == pytest.approx(2.0) and c["ratio_hi"] == pytest.approx(2.0)
    assert bool(c["winner_changed"])
    assert pd.isna(c["r"]) and pd.isna(c["s"]) and c["c"] == 32 and c["sh"] == 1


def test_several_crossovers_along_the_filter():
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 4}, 3: {"direct": 4, "fft": 1},
                            5: {"direct": 4, "fft": 1}, 7: {"direct": 1, "fft": 4},
                            9: {"direct": 4, "fft": 1}}))
    assert _pairs(analysis.crossovers(df)) == [
        ("r", 1, 3, "direct", "fft"), ("r", 5, 7, "fft", "direct"),
        ("r", 7, 9, "direct", "fft")]


def test_a_tie_between_two_decisive_points_is_skipped():
    times = {3: {"direct": 1.0, "fft": 2.0}, 5: {"direct": 1.0, "fft": 1.005},
             7: {"direct": 2.0, "fft": 1.0}}
    assert _pairs(analysis.crossovers(frame(*sweep("r", times)))) == [
        ("r", 3, 7, "direct", "fft")]
    # a tie that returns to the same order is no crossover
    times[7] = {"direct": 1.0, "fft": 2.0}
    assert analysis.crossovers(frame(*sweep("r", times))).empty


def test_winner_changed_only_when_the_pair_holds_the_lead():
    # fft overtakes im2col, but direct wins every problem
    df = frame(*sweep("r", {3: {"direct": 1, "im2col": 2, "fft": 4},
                            5: {"direct": 1, "im2col": 4, "fft": 2}}))
    cx = analysis.crossovers(df)
    assert _pairs(cx) == [("r", 3, 5, "im2col", "fft")]
    assert not cx.iloc[0]["winner_changed"]


def test_crossover_along_the_stride():
    df = frame(*sweep("sh", {1: {"direct": 4, "fft": 1}, 2: {"direct": 1, "fft": 3}}, r=5))
    cx = analysis.crossovers(df)
    assert _pairs(cx) == [("sh", 1, 2, "fft", "direct")]
    assert cx.iloc[0]["sentence"] == ("direct overtakes fft between stride 1 and 2 at 5x5 "
                                      "filter, 32→32 channels, 16x16")


def test_crossovers_along_input_and_output_channels():
    df = frame(*sweep("c", {8: {"direct": 1, "im2col": 2}, 16: {"direct": 2, "im2col": 2.5},
                            64: {"direct": 4, "im2col": 3}}, k=16),
               *sweep("k", {8: {"direct": 1, "im2col": 3}, 64: {"direct": 5, "im2col": 3}},
                      c=8))
    cx = analysis.crossovers(df)
    # the (c=8, k=16) problem lies on both sweeps
    assert _pairs(cx) == [("c", 16, 64, "direct", "im2col"), ("k", 16, 64, "direct", "im2col")]
    assert cx["sentence"].tolist() == [
        "im2col overtakes direct between input channels 16 and 64 at 3x3 filter, stride 1, "
        "16 output channels, 16x16",
        "im2col overtakes direct between output channels 16 and 64 at 3x3 filter, stride 1, "
        "8 input channels, 16x16"]


def test_contexts_are_kept_apart():
    # at 16x16 direct leads on filters 1 and 3, at 32x32 fft on 5 and 7: merged, that would
    # read as a crossover between 3 and 5; apart, neither context has one
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 2}, 3: {"direct": 1, "fft": 2}}, h=16),
               *sweep("r", {5: {"direct": 2, "fft": 1}, 7: {"direct": 2, "fft": 1}}, h=32))
    assert analysis.crossovers(df).empty
    # each size with its own crossover, each under its own context
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 2}, 3: {"direct": 2, "fft": 1}}, h=16),
               *sweep("r", {3: {"direct": 1, "fft": 2}, 5: {"direct": 2, "fft": 1}}, h=32))
    cx = analysis.crossovers(df, axes=("r",))
    assert sorted(zip(cx["context"], cx["lo"], cx["hi"], strict=True)) == [
        ("stride 1, 32→32 channels, 16x16", 1, 3), ("stride 1, 32→32 channels, 32x32", 3, 5)]


def test_the_filter_axis_uses_square_filters_only():
    # a 5x1 filter where fft leads must not join the square sweep
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 2}, 3: {"direct": 1, "fft": 2}}),
               row("direct", 2, r=5, s=1), row("fft", 1, r=5, s=1))
    assert analysis.crossovers(df, axes=("r",)).empty


def test_inaccurate_points_do_not_count():
    df = frame(*sweep("r", {1: {"direct": 1, "fft": 2}}),
               row("direct", 2, r=3), row("fft", 1, r=3, accurate=False))
    assert analysis.crossovers(df).empty


def test_unknown_axis_is_an_error():
    with pytest.raises(ValueError, match="'q'"):
        analysis.crossovers(frame(row()), axes=("q",))


# -- ratios -----------------------------------------------------------------------------------

def test_ratios_against_a_baseline():
    df = frame(row("direct", 2.0, r=1), row("im2col", 1.0, r=1), row("fft", 5.0, r=1),
               row("direct", status="error", r=3), row("im2col", 1.0, r=3))
    got = analysis.ratios(df, "direct")
    assert list(got.columns) == analysis.RATIO_COLUMNS
    assert got["label"].tolist() == ["direct", "im2col", "fft", "im2col"]
    assert got["ratio"].tolist()[:3] == pytest.approx([1.0, 0.5, 2.5])
    assert math.isnan(got["ratio"].iloc[3]) and math.isnan(got["baseline_s"].iloc[3])


# -- networks ---------------------------------------------------------------------------------

def test_network_summary_totals_by_hand():
    df = frame(
        row("direct", 1.0, name="toy:a", count=2, r=1), row("im2col", 2.0, name="toy:a",
                                                           count=2, r=1),
        row("direct", 4.0, name="toy:b", count=3), row("im2col", 1.0, name="toy:b", count=3),
        row("direct", 1.0, name="toy:dw", groups=32), row("depthwise", 0.25, name="toy:dw",
                                                          groups=32),
        row("im2col", status="skipped", name="toy:dw", groups=32),
        # not layers of the network: a stand-in comparison and an unnamed problem
        row("direct", 0.01, name="toy:conv_std_1", r=5), row("direct", 0.01, r=7),
        row("direct", 7.0, name="other:x"), row("fft", 5.0, name="other:x"),
    )
    layers, totals = analysis.network_summary(df)
    assert list(layers.columns) == analysis.LAYER_COLUMNS
    assert list(totals.columns) == analysis.TOTAL_COLUMNS
    assert layers[["network", "name", "winner"]].values.tolist() == [
        ["toy", "toy:a", "direct"], ["toy", "toy:b", "im2col"], ["toy", "toy:dw", "depthwise"],
        ["other", "other:x", "fft"]]
    assert layers["total_s"].tolist() == pytest.approx([2.0, 3.0, 0.25, 5.0])
    toy = totals[totals["network"] == "toy"]
    best = 2 * 1.0 + 3 * 1.0 + 1 * 0.25
    direct = 2 * 1.0 + 3 * 4.0 + 1 * 1.0
    # im2col did not run on the depthwise layer, depthwise only ran there
    assert toy["algorithm"].tolist() == [analysis.BEST_PER_LAYER, "direct"]
    assert toy["total_s"].tolist() == pytest.approx([best, direct])
    assert toy["vs_best_per_layer"].tolist() == pytest.approx([1.0, direct / best])
    assert toy["complete"].all()
    other = totals[totals["network"] == "other"]
    assert other["algorithm"].tolist() == [analysis.BEST_PER_LAYER, "fft", "direct"]


def test_network_summary_without_networks_is_empty():
    layers, totals = analysis.network_summary(frame(row("direct", 1.0)))
    assert layers.empty and totals.empty


# -- separable --------------------------------------------------------------------------------

def test_separable_savings_by_hand():
    c, k, r = 32, 64, 3
    df = frame(row("direct", 2.0, k=k), row("im2col", 0.5, k=k, accurate=False),
               row("separable", 0.5, k=k),
               row("direct", 1.0, k=k, stride=2), row("separable", 0.5, k=k, stride=2),
               row("direct", 1.0, k=k, r=5))  # no separable row: not in the table
    got = analysis.separable_savings(df)
    assert list(got.columns) == analysis.SEPARABLE_COLUMNS
    assert len(got) == 2
    one, two = got.iloc[0], got.iloc[1]
    assert one["standard_params"] == k * c * r * r == 18432
    assert one["separable_params"] == c * r * r + k * c == 2336
    assert one["params_ratio"] == pytest.approx(1 / k + 1 / (r * r))
    assert one["standard_flops"] == 2 * 16 * 16 * k * c * r * r
    assert one["separable_flops"] == 2 * 16 * 16 * (c * r * r + k * c)
    assert two["separable_flops"] == 2 * 8 * 8 * (c * r * r + k * c)
    assert one["flops_ratio"] == pytest.approx(1 / k + 1 / (r * r))
    # the inaccurate im2col does not count as the standard conv's best time
    assert (one["best_standard"], one["standard_s"], one["separable_s"]) == ("direct", 2.0, 0.5)
    assert one["time_ratio"] == pytest.approx(0.25) and one["speedup"] == pytest.approx(4.0)
    assert two["time_ratio"] == pytest.approx(0.5)
    assert one["separable_gflops"] == pytest.approx(one["separable_flops"] / 0.5 / 1e9)


# -- training step ----------------------------------------------------------------------------

def test_training_step_sums_each_directions_best_against_the_baselines_three():
    def named(algo, t, direction, name="net:l1", count=2, **problem):
        r = row(algo, t, direction=direction, padding=1, **problem)
        return {**r, "name": name, "count": count,
                "family": "baseline" if algo == "torch" else algo}

    times = {"fwd": {"direct": 1.0, "im2col": 2.0, "torch": 1.5},
             "bwd_d": {"direct": 3.0, "fft": 2.5, "torch": 2.0},
             "bwd_w": {"im2col": 4.0, "direct": 5.0, "torch": 6.0}}
    rows = [named(a, t, d) for d, ts in times.items() for a, t in ts.items()]
    rows.append(named("direct", 9.0, "fwd", name="net:l2", k=16))  # forward only: left out
    steps = analysis.training_step(frame(*rows))
    assert len(steps) == 1
    s = steps.iloc[0]
    assert (s["network"], s["name"], s["count"]) == ("net", "net:l1", 2)
    assert not s["problem"].endswith(("-bwd_d", "-bwd_w"))
    assert (s["fwd_by"], s["bwd_d_by"], s["bwd_w_by"]) == ("direct", "fft", "im2col")
    assert s["step_s"] == pytest.approx(1.0 + 2.5 + 4.0)
    assert s["baseline_step_s"] == pytest.approx(1.5 + 2.0 + 6.0)
    assert s["vs_baseline"] == pytest.approx(7.5 / 9.5)


# -- accuracy against speed -------------------------------------------------------------------

FAMILY = {"winograd_f23": "winograd", "winograd_f43": "winograd", "winograd_f63": "winograd",
          "im2col": "gemm"}


def fast(algo, t, err, **problem):
    """A row of ``algo`` with its registry family and error ``err``."""
    return {**row(algo, t, **problem), "family": FAMILY.get(algo, algo), "max_rel_err": err}


def test_accuracy_speed_marks_the_frontier_of_each_group():
    df = frame(
        fast("direct", 4.0, 1e-7), fast("fft", 2.0, 3e-6), fast("winograd_f23", 1.0, 1e-6),
        fast("winograd_f43", 0.5, 5e-6), fast("im2col", 0.1, 1e-7),  # gemm: not a fast family
        # a second 3x3 problem, of the same group: its points are dominated by the first's
        fast("direct", 8.0, 1e-7, c=64), fast("fft", 8.0, 2e-6, c=64),
        fast("winograd_f23", 4.0, 1e-6, c=64),
        # 5x5: its own group, where fft is alone on the frontier
        fast("direct", 6.0, 1e-7, r=5), fast("fft", 2.0, 2e-6, r=5))
    pts = analysis.accuracy_speed(df)
    assert list(pts.columns) == analysis.FRONTIER_COLUMNS
    assert set(pts["family"]) == {"fft", "winograd"}
    got = {(p["label"], p["c"], p["r"]): (p["speedup"], p["on_frontier"])
           for _, p in pts.iterrows()}
    assert got == {("fft", 32, 3): (pytest.approx(2.0), False),  # f23: 4x at 1e-6
                   ("winograd_f23", 32, 3): (pytest.approx(4.0), True),
                   ("winograd_f43", 32, 3): (pytest.approx(8.0), True),
                   ("fft", 64, 3): (pytest.approx(1.0), False),
                   ("winograd_f23", 64, 3): (pytest.approx(2.0), False),  # f23 at c=32: 4x
                   ("fft", 32, 5): (pytest.approx(3.0), True)}
    assert pts.loc[pts["label"] == "winograd_f43", "error"].item() == 5e-6


def test_accuracy_speed_keeps_equal_points_and_leaves_out_rows_without_direct():
    df = frame(
        fast("direct", 4.0, 1e-7), fast("fft", 2.0, 1e-6), fast("winograd_f23", 2.0, 1e-6),
        fast("winograd_f43", 2.0, 2e-6),        # as fast, less accurate: dominated
        fast("fft", 1.0, 1e-6, k=16),           # no direct on its problem
        fast("direct", 1.0, 1e-7, k=8, accurate=False), fast("fft", 0.5, 1e-6, k=8),  # nor here
        fast("direct", 1.0, 1e-7, stride=2), fast("fft", 0.5, 1e-6, stride=2, accurate=False))
    pts = analysis.accuracy_speed(df)
    assert set(pts["k"]) == {32} and set(pts["sh"]) == {1}
    on = dict(zip(pts["label"], pts["on_frontier"], strict=True))
    assert on == {"fft": True, "winograd_f23": True, "winograd_f43": False}


def test_accuracy_speed_compares_each_device_with_its_own_direct():
    df = frame(fast("direct", 4.0, 1e-7), fast("fft", 2.0, 1e-6),
               fast("direct", 1.0, 1e-7, device="cuda"), fast("fft", 2.0, 1e-6, device="cuda"))
    pts = analysis.accuracy_speed(df).set_index("label")
    assert pts.loc["fft", "speedup"] == pytest.approx(2.0)
    assert pts.loc["fft@cuda", "speedup"] == pytest.approx(0.5)
    assert pts["on_frontier"].all()  # one point per group (the device is part of it)
    assert analysis.accuracy_speed(frame(fast("fft", 1.0, 1e-6))).empty


def test_frontier_group_text():
    group = {"device": "cpu", "dtype": "float32", "direction": "fwd", "r": 3, "s": 3,
             "sh": 1, "sw": 1}
    assert analysis.frontier_group_text(group) == "3x3, stride 1"
    assert analysis.frontier_group_text({**group, "sw": 2, "dtype": "float64",
                                         "device": "cuda"}) == "3x3, stride 1x2, float64, on cuda"


# -- against NNPACK's published table ---------------------------------------------------------

def nnpack_layer(layer, times, **extra):
    """Rows of the preset's ``layer`` (at batch 1): ``times = {algorithm: seconds}``."""
    from convbench import sweep
    spec = next(p for p in sweep.preset("nnpack-table").problems if p.name == layer)
    return [{**row(a, t, **{f: getattr(spec, f) for f in ("c", "h", "k", "r", "padding")},
                   **extra),
             "name": layer, "family": FAMILY.get(a, a)} for a, t in times.items()]


def test_nnpack_comparison_counts_agreement_by_family():
    rows = (nnpack_layer("nnpack:alexnet-conv3", {"direct": 3.0, "fft": 1.0,   # fft, as NNPACK
                                                  "winograd_f43": 2.0})
            + nnpack_layer("nnpack:overfeat-conv3", {"fft": 1.0, "winograd_f23": 2.0})
            + nnpack_layer("nnpack:overfeat-conv4", {"fft": 1.0, "winograd_f43": 1.001})
            + nnpack_layer("nnpack:vgg-a-conv1", {"im2col": 1.0, "fft": 2.0})   # gemm, as NNPACK
            + nnpack_layer("nnpack:vgg-a-conv2", {"direct": 1.0, "fft": 2.0})
            + nnpack_layer("nnpack:vgg-a-conv5", {"direct": 1.0, "fft": 2.0}, status="error")
            + nnpack_layer("nnpack:alexnet-conv5", {"fft": 0.1}, direction="bwd_d")
            + [row("fft", 1.0, name="other:conv3")])
    t = analysis.nnpack_comparison(frame(*rows))
    assert list(t.columns) == analysis.NNPACK_COLUMNS
    got = {r["table_name"]: (r["winner"], r["family"], r["published_family"], r["agree"],
                             r["tied"]) for _, r in t.iterrows()}
    assert got == {
        "AlexNet:conv3": ("fft", "fft", "fft", True, False),
        "OverFeat:conv3": ("fft", "fft", "winograd", False, False),  # NNPACK: F(6x6,3x3)
        "OverFeat:conv4": ("fft", "fft", "winograd", False, True),   # F(4,3) within noise
        "VGG-A:conv1": ("im2col", "gemm", "gemm", True, False),
        "VGG-A:conv2": ("direct", "direct", "fft", False, False),
        "VGG-A:conv5": ("", "", "fft", pd.NA, pd.NA)}                # nothing ran: no verdict
    assert t["agree"].dropna().astype(bool).sum() == 2 and t["agree"].notna().sum() == 5
    counterpart = dict(zip(t["table_name"], t["counterpart"], strict=True))
    assert counterpart["VGG-A:conv2"] is False and counterpart["OverFeat:conv3"] is True
    assert t.set_index("table_name").loc["VGG-A:conv1", "published_ms"] == 255
    assert analysis.nnpack_comparison(frame(row("fft", 1.0, name="net:x"))).empty
