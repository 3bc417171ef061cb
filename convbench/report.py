"""The HTML report of a saved run: findings first, then charts, tables, accuracy, machine.

`write_report` reads a run directory (`convbench.store.load_run`, `convbench.store.read_meta`)
and runs nothing.  It writes the charts as PNG files beside ``report.html`` and embeds the
same PNGs in the HTML as base64 data URIs, so that the one file can be sent on its own: no
scripts, no fonts, no external resources.

Every string that comes from a user (sweep name and description, layer names, paths, reasons,
warnings) reaches the page through Jinja2 with autoescaping on.
"""

from __future__ import annotations

import base64
import math
import os
import re
from datetime import datetime
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.colors import to_hex

from . import analysis, baselines, phases, plots, roofline, store

TEMPLATE = "report.html.j2"
REPORT = "report.html"
DEFAULT_DIR = "reports"


def write_report(run_dir, out_dir=None) -> Path:
    """Write the report of a saved run and return the path of ``report.html``.

    Parameters
    ----------
    run_dir : path
        A run directory (``results/<run-id>/``).
    out_dir : path, optional
        Where ``report.html`` and its PNG charts go (default ``reports/<run-id>/``, relative
        to the working directory).  Created if missing; files of an earlier report there are
        replaced.

    Raises
    ------
    ValueError
        When ``run_dir`` is not a convbench run.
    """
    run_dir = Path(run_dir)
    if run_dir.suffix == ".parquet":  # load_run accepts the rows file too
        run_dir = run_dir.parent
    meta = store.read_meta(run_dir)
    df = store.load_run(run_dir)
    # The directory's own name, not meta's run_id: a path never comes from file contents.
    out = Path(out_dir) if out_dir is not None else Path(DEFAULT_DIR) / run_dir.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    for name, _, _ in (*plots.CHARTS, plots.ROOFLINE_CHART):  # an earlier report's chart
        (out / name).unlink(missing_ok=True)                  # that this run has no data for
    charts = plots.write_charts(df, out, roofline=meta.get("roofline"))
    html = render(df, meta, charts, run_dir=run_dir)
    path = out / REPORT
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render(df: pd.DataFrame, meta: dict, charts=(), run_dir=None) -> str:
    """The report's HTML for rows and meta; ``charts`` are (PNG path, caption) pairs."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("convbench", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context(df, meta, charts, run_dir))


# ---------------------------------------------------------------------------------------------
# What the template shows

def context(df: pd.DataFrame, meta: dict, charts=(), run_dir=None) -> dict:
    """Everything the template needs, as plain strings, numbers, lists and dicts."""
    config = meta.get("config") or {}
    palette = {name: to_hex(c) for name, c in plots.colors(df["algorithm"].dropna()).items()}
    win = analysis.winners(df)
    xo = analysis.crossovers(df)
    layers, totals = analysis.network_summary(df)
    sep = analysis.separable_savings(df)
    vs_base = analysis.baseline_ratios(df)
    frontier = analysis.accuracy_speed(df)
    nnpack = analysis.nnpack_comparison(df)
    counts = df["status"].value_counts()
    shape = shapes(df)
    return {
        "title": str(config.get("name") or meta.get("run_id") or "convbench run"),
        "description": str(config.get("description") or ""),
        "run_id": str(meta.get("run_id") or ""),
        "run_dir": str(run_dir or ""),
        "source": str(config.get("source") or ""),
        "date": _date(meta.get("start")),
        "duration": _duration(meta.get("start"), meta.get("end")),
        "complete": bool(meta.get("complete", True)),
        "status_counts": ", ".join(f"{n} {s}" for s, n in counts.items()),
        "n_rows": len(df),
        "findings": findings(df, meta, win, xo, layers, totals, sep, vs_base, frontier,
                             nnpack),
        "charts": [{"data": data_uri(p), "file": Path(p).name, "caption": caption}
                   for p, caption in charts],
        "colours": palette,
        "winners": _winner_rows(win, shape),
        "crossovers": _crossover_rows(xo),
        "layers": _layer_rows(layers, shape),
        "totals": _total_rows(totals),
        "separable": _separable_rows(sep, shape),
        "training": _training_rows(analysis.training_step(df), shape),
        "baseline": _baseline_table(vs_base),
        "frontier": _frontier_rows(frontier, shape),
        "nnpack": _nnpack_rows(nnpack, shape),
        "model": winner_model(df),
        "rows": _all_rows(df, shape),
        "accuracy": accuracy(df),
        "inaccurate": _inaccurate_rows(df),
        "environment": environment(meta),
        "warnings": warnings(df, meta),
    }


def data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _date(text) -> str:
    t = _time(text)
    return t.strftime("%Y-%m-%d %H:%M:%S %z").strip() if t else str(text or "")


def _time(text):
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def _duration(start, end) -> str:
    a, b = _time(start), _time(end)
    if not (a and b):
        return ""
    s = (b - a).total_seconds()
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# ---------------------------------------------------------------------------------------------
# Number formats

def ms(seconds) -> str:
    """Milliseconds with three significant digits, never in exponent form."""
    if seconds is None or pd.isna(seconds):
        return ""
    v = float(seconds) * 1e3
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def num(v, digits: int = 3) -> str:
    if v is None or pd.isna(v):
        return ""
    v = float(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def sci(v) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.2e}"


def times(v) -> str:
    if v is None or pd.isna(v):
        return ""
    v = float(v)
    return f"{v:.2f}\u00d7" if v < 10 else f"{v:.0f}\u00d7"


def _percent(v) -> str:
    return "" if v is None or pd.isna(v) else f"{100 * float(v):.3g}%"


def _int(v):
    return None if v is None or pd.isna(v) else int(v)


def shapes(df: pd.DataFrame) -> dict[str, str]:
    """Each problem id in a few words: ``32→64 3×3 s2 dw @112``."""
    first = df.drop_duplicates(subset=["problem"])
    return {r["problem"]: analysis.shape_label(r) for _, r in first.iterrows()}


def problem_name(row) -> str:
    name = row.get("name")
    return str(name) if isinstance(name, str) and name else str(row["problem"])


# ---------------------------------------------------------------------------------------------
# Findings: the answers, in sentences

def findings(df, meta, win, xo, layers, totals, sep, vs_base, frontier, nnpack) -> list[dict]:
    """The summary at the top: a list of ``{"text", "items", "kind"}``."""
    out = []
    ran = df[df["status"] == "ok"]
    if win.empty:
        out.append({"kind": "warn", "items": [], "text":
                    "No algorithm produced an accurate, timed result in this run: there is no "
                    "winner to report."})
    else:
        out.append({"kind": "", "text": winner_sentence(win), "items": _winner_details(win)})
    changed = xo[xo["winner_changed"].fillna(False).astype(bool)] if not xo.empty else xo
    if not changed.empty:
        out.append({"kind": "", "text": "Where the winner changes:",
                    "items": [s + "." for s in changed["sentence"]]})
    elif not win.empty and len(win) > 1:
        swept = not analysis.swept_pairs(df).empty
        out.append({"kind": "", "items": [], "text":
                    "The winner does not change along any swept axis in this run." if swept
                    else "No two problems of this run differ in one field only (filter, "
                    "stride, channels, size or batch), so there is no crossover to look for."})
    out += _phase_findings(df, xo)
    out += _network_findings(totals, layers)
    out += _baseline_findings(vs_base)
    if not nnpack.empty:
        out.append(_nnpack_finding(nnpack))
    if not sep.empty:
        out.append(_separable_finding(sep))
    out.append(_accuracy_finding(ran))
    if frontier["on_frontier"].any():
        out.append(_frontier_finding(frontier))
    # The timer's own warnings (convbench.timing.measure): a spread too wide, too few values,
    # a value too short to time.
    flagged = ran["warnings"].fillna("").str.contains("unstable|budget|resolution", regex=True)
    if flagged.any():
        out.append({"kind": "warn", "items": [], "text":
                    f"{int(flagged.sum())} of {len(ran)} measured times carry a timing warning "
                    "(a wide spread, too few values, or values too short to time): a lead "
                    "smaller than the spread is not a result; see Warnings."})
    sim = ran[analysis.simulated(ran)]
    if len(sim):
        out.append({"kind": "warn", "items": [], "text":
                    f"{len(sim)} CUDA result{'s' if len(sim) != 1 else ''} ran on Numba's CUDA "
                    "simulator (NUMBA_ENABLE_CUDASIM=1): correct or not, their times are "
                    "meaningless, and they are left out of winners and crossovers."})
    out += [{"kind": "", "items": [], "text": text}
            for text in roofline.sentences(df, meta.get("roofline"))]
    out += [{"kind": "warn", "items": [], "text": text} for text in roofline.far_from_limit(df)]
    for _, text in machine_warnings(meta):
        out.append({"kind": "warn", "items": [], "text": f"Machine: {text}."})
    errors = df[df["status"] == "error"]
    if len(errors):
        out.append({"kind": "warn", "items": [], "text":
                    f"{len(errors)} case{'s' if len(errors) != 1 else ''} failed with an error; "
                    "see Warnings."})
    return out


def winner_sentence(win: pd.DataFrame) -> str:
    counts = win["winner"].value_counts()
    total = len(win)
    parts = [f"{a} wins {n} of {total} problem{'s' if total != 1 else ''}"
             if i == 0 else f"{a} {n}" for i, (a, n) in enumerate(counts.items())]
    text = ", ".join(parts) + "."
    tied = int((win["ties"].fillna("") != "").sum())
    if tied:
        text += (f" On {tied} of them the winner is tied, within measurement noise, with "
                 "another algorithm (see the table of winners).")
    return text


def _ranges(values) -> str:
    """``1, 3, 7-11``: sorted odd/even runs of a filter sweep written as ranges."""
    values = sorted(set(int(v) for v in values))
    if len(values) < 3:
        return ", ".join(map(str, values))
    step = min(b - a for a, b in zip(values, values[1:], strict=False))
    runs, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v - prev == step:
            prev = v
            continue
        runs.append(f"{start}" if start == prev else f"{start}\u2013{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(runs)


def _winner_details(win: pd.DataFrame) -> list[str]:
    """Per stride and context of a filter sweep: which algorithm wins at which filter sizes."""
    w = win[win["r"] == win["s"]]
    out = []
    keys = ["sh", "sw", *analysis.CONTEXT]
    for key, g in w.groupby(keys, sort=True, dropna=False):
        if g["r"].nunique() < 2:
            continue
        where = "; ".join(f"{a} at filter {_ranges(gg['r'])}"
                          for a, gg in g.groupby("winner", sort=False))
        context = analysis.context_text(dict(zip(keys, key, strict=True)), "r")
        out.append(f"{context[:1].upper()}{context[1:]}: {where}.")
    return out


def _phase_findings(df: pd.DataFrame, xo: pd.DataFrame) -> list[dict]:
    """Transforms against the multiply: each phased algorithm's transform share, and for
    each crossover whether the multiply or the transforms decide it (`convbench.phases`)."""
    shares = phases.transform_share(df)
    if shares.empty:
        return []
    items = []
    for lab, g in shares.groupby("label", sort=False):
        lo, hi = g["transform_share"].min(), g["transform_share"].max()
        span = f"{100 * lo:.0f}%" if round(100 * lo) == round(100 * hi) else \
            f"{100 * lo:.0f}\u2013{100 * hi:.0f}%"
        items.append(f"{lab}: {span} of its time, over {len(g)} "
                     f"problem{'s' if len(g) != 1 else ''}")
    out = [{"kind": "", "items": items, "text": "Where the time goes: the share of transforms "
            "and data movement (every phase but the multiply; see the phases chart):"}]
    decided = phases.deciders(df, xo)
    if not decided.empty:
        out.append({"kind": "", "text": "What decides each crossover, transforms or multiply:",
                    "items": list(decided["sentence"])})
    return out


def _network_findings(totals: pd.DataFrame, layers: pd.DataFrame) -> list[dict]:
    out = []
    if totals.empty:
        return out
    for net, t in totals.groupby("network", sort=False):
        mine = layers[layers["network"] == net]
        repeats = int(mine["count"].sum())
        best = t[t["algorithm"] == analysis.BEST_PER_LAYER]
        single = t[t["algorithm"] != analysis.BEST_PER_LAYER].sort_values("total_s")
        if best.empty or pd.isna(best["total_s"].iloc[0]):
            continue
        b = best.iloc[0]
        text = (f"{net}: choosing the fastest algorithm for each layer, the network's "
                f"{int(b['n_layers'])} layers"
                + (f" ({repeats} with repeats)" if repeats != len(mine) else "")
                + f" take {ms(b['total_s'])} ms")
        if not bool(b["complete"]):
            text += " (some layers had no accurate result and are left out)"
        if single.empty:
            text += "; no single algorithm ran accurately on every layer."
        else:
            s = single.iloc[0]
            text += (f"; the fastest single algorithm, {s['algorithm']}, takes "
                     f"{ms(s['total_s'])} ms ({times(s['vs_best_per_layer'])} the best per "
                     "layer).")
        out.append({"kind": "", "text": text, "items": []})
    return out


def _baseline_findings(t: pd.DataFrame) -> list[dict]:
    """One sentence: the best convbench algorithm per layer against torch (oneDNN)."""
    if t.empty:
        return []
    layers, mean = t.iloc[:-1], t.iloc[-1]
    best = layers[analysis.BEST_CONVBENCH].dropna()
    if best.empty:
        return []
    faster = int((best < 1).sum())
    return [{"kind": "", "items": [], "text":
             f"Against {baselines.title('torch')}: the best convbench algorithm per layer "
             f"takes {_span(best)} its time, faster on {faster} of {len(best)} layers "
             f"(geometric mean {times(mean[analysis.BEST_CONVBENCH])}); see Against "
             "torch."}]


def _separable_finding(sep: pd.DataFrame) -> dict:
    n = len(sep)
    flops, params = sep["flops_ratio"].dropna(), sep["params_ratio"].dropna()
    same = len(flops) == len(params) and (flops - params).abs().max() < 1e-9 * flops.max()
    counts = (f"its parameters and FLOPs are {_span(flops, percent=True)} of the standard "
              "convolution's" if same else
              f"its parameters are {_span(params, percent=True)} and its FLOPs "
              f"{_span(flops, percent=True)} of the standard convolution's")
    text = (f"Depthwise-separable factorisation, on {n} problem{'s' if n != 1 else ''} (a "
            f"different, cheaper function than the standard convolution): {counts}")
    speed = sep["speedup"].dropna()
    if len(speed):
        faster = int((speed > 1).sum())
        text += (f"; its speed-up over the best standard convolution is {_span(speed)}, "
                 f"faster on {faster} of {len(speed)}")
    return {"kind": "", "text": text + ".", "items": []}


def _nnpack_finding(t: pd.DataFrame) -> dict:
    """convbench's winning family against NNPACK's published one, layer by layer."""
    judged = t[t["winner"] != ""]
    if judged.empty:
        return {"kind": "", "items": [], "text":
                f"None of the {len(t)} layers of NNPACK's table in this run has an accurate "
                "CPU result: there is no winner to compare with NNPACK's."}
    agree = judged[judged["agree"].astype(bool)]
    parts = []
    if len(agree):
        counts = agree["family"].value_counts()
        parts.append("agreeing: " + ", ".join(f"{f} on {n}" for f, n in counts.items()))
    differ = judged[~judged["agree"].astype(bool)]
    for (mine, theirs), g in differ.groupby(["family", "published_family"], sort=False):
        note = " (no counterpart in NNPACK's table)" if not bool(g["counterpart"].iloc[0]) \
            else ""
        tied = int(g["tied"].astype(bool).sum())
        parts.append(f"convbench's {mine}{note} where NNPACK's {theirs} wins: {len(g)} "
                     f"layer{'s' if len(g) != 1 else ''}"
                     + (f", {tied} of them tied with {theirs} within noise" if tied else ""))
    tied = int(differ["tied"].astype(bool).sum())
    text = (f"convbench's winner agrees with NNPACK's on {len(agree)} of {len(judged)} "
            f"layer{'s' if len(judged) != 1 else ''} of NNPACK's published table, compared "
            f"by family ({'; '.join(parts)}); see Against NNPACK.")
    if tied:
        text += (f" On {tied} of the others the measurement does not decide: NNPACK's family "
                 f"is tied with the winner, so {len(agree) + tied} of {len(judged)} agree "
                 "within noise.")
    return {"kind": "", "items": [], "text": text}


def _frontier_finding(pts: pd.DataFrame) -> dict:
    """Per filter size and stride, the algorithms on the accuracy-speed frontier, from the
    most accurate to the fastest."""
    items = []
    for key, g in pts.groupby(list(analysis.FRONTIER_GROUP), sort=True, dropna=False):
        front = g[g["on_frontier"]]
        if front.empty:
            continue
        steps = []
        for lab, f in sorted(front.groupby("label"), key=lambda kv: kv[1]["speedup"].median()):
            err, speed = f["error"].astype(float), f["speedup"].astype(float)
            where = "" if len(f) == 1 else f", {len(f)} problems"
            steps.append(f"{lab} (error {_span(err, fmt=sci)}, {_span(speed)}{where})")
        group = analysis.frontier_group_text(dict(zip(analysis.FRONTIER_GROUP, key,
                                                      strict=True)))
        items.append(f"{group[:1].upper()}{group[1:]}: " + " \u2192 ".join(steps) + ".")
    return {"kind": "", "items": items, "text":
            "The accuracy-speed frontier of the FFT and Winograd algorithms (speed-up over "
            "direct against error; no other result of the same filter size and stride is "
            "both faster and more accurate), from the most accurate to the fastest:"}


def _span(values: pd.Series, percent: bool = False, fmt=None) -> str:
    """``0.06×–42× (median 1.3×)``, or one value when they all agree within 5 %; numbers as
    ``fmt`` gives them (default: `times`, or a percentage with ``percent``)."""
    fmt = fmt or ((lambda v: f"{100 * v:.3g}%") if percent else times)
    lo, hi = float(values.min()), float(values.max())
    if math.isclose(lo, hi, rel_tol=0.05):
        return fmt((lo + hi) / 2)
    return f"{fmt(lo)}\u2013{fmt(hi)} (median {fmt(values.median())})"


def _accuracy_finding(ran: pd.DataFrame) -> dict:
    if ran.empty:
        return {"kind": "", "text": "No row was measured, so nothing was checked for accuracy.",
                "items": []}
    bad = ran[~ran["accurate"].fillna(False).astype(bool)]
    if bad.empty:
        worst = ran.assign(q=ran["max_rel_err"] / ran["tolerance"]).sort_values("q").iloc[-1]
        return {"kind": "", "items": [], "text":
                f"Every measured result ({len(ran)}) is within its algorithm's tolerance; the "
                f"closest is {worst['algorithm']} at {sci(worst['max_rel_err'])} "
                f"({times(worst['max_rel_err'] / worst['tolerance'])} its tolerance "
                f"{sci(worst['tolerance'])})."}
    return {"kind": "warn", "text":
            f"{len(bad)} of {len(ran)} measured results exceed their tolerance and are not "
            "ranked:", "items": [
                f"{problem_name(r)} {analysis.label(r['algorithm'], r['device'])}: error "
                f"{sci(r['max_rel_err'])} > tolerance {sci(r['tolerance'])}"
                for _, r in bad.iterrows()]}


# ---------------------------------------------------------------------------------------------
# Tables

def _winner_rows(win: pd.DataFrame, shape: dict) -> list[dict]:
    return [{
        "problem": problem_name(w), "id": w["problem"], "shape": shape[w["problem"]],
        "count": _int(w["count"]), "winner": w["winner"],
        "algo": analysis.algorithm_of(w["winner"]),
        "ms": ms(w["median_s"]), "gflops": num(w["gflops"]), "ties": w["ties"] or "",
        "runner_up": w["runner_up"] or "", "ratio": times(w["runner_up_ratio"]),
    } for _, w in win.iterrows()]


def _crossover_rows(xo: pd.DataFrame) -> list[dict]:
    if xo.empty:
        return []
    return [{"sentence": x["sentence"], "changed": bool(x["winner_changed"]),
             "ratio_lo": times(x["ratio_lo"]), "ratio_hi": times(x["ratio_hi"])}
            for _, x in xo.iterrows()]


def _layer_rows(layers: pd.DataFrame, shape: dict) -> list[dict]:
    return [{"network": r["network"], "name": r["name"], "shape": shape[r["problem"]],
             "count": _int(r["count"]), "winner": r["winner"] or "none",
             "algo": analysis.algorithm_of(r["winner"]) if r["winner"] else "",
             "ms": ms(r["median_s"]), "total": ms(r["total_s"]), "ties": r["ties"] or ""}
            for _, r in layers.iterrows()]


def _total_rows(totals: pd.DataFrame) -> list[dict]:
    return [{"network": t["network"], "algorithm": t["algorithm"],
             "algo": analysis.algorithm_of(t["algorithm"]), "total": ms(t["total_s"]),
             "vs": times(t["vs_best_per_layer"]), "layers": _int(t["n_layers"]),
             "best": t["algorithm"] == analysis.BEST_PER_LAYER}
            for _, t in totals.iterrows()]


def _training_rows(steps: pd.DataFrame, shape: dict) -> dict:
    """The training-step table: per layer the best of each direction and the step against
    the baseline, then per network the step's total (each layer times its count)."""
    if steps.empty:
        return {}
    rows = [{"name": r["name"] or r["problem"], "shape": shape.get(r["problem"], ""),
             "count": _int(r["count"]),
             "dirs": [{"ms": ms(r[f"{d}_s"]), "by": r[f"{d}_by"],
                       "algo": analysis.algorithm_of(r[f"{d}_by"])}
                      for d in ("fwd", "bwd_d", "bwd_w")],
             "step": ms(r["step_s"]), "base": ms(r["baseline_step_s"]),
             "vs": times(r["vs_baseline"])} for _, r in steps.iterrows()]
    nets = []
    for net, g in steps[steps["network"] != ""].groupby("network", sort=False):
        step = (g["step_s"] * g["count"]).sum()
        base = (g["baseline_step_s"] * g["count"]).sum()
        nets.append({"network": net, "layers": len(g), "step": ms(step), "base": ms(base),
                     "vs": times(step / base)})
    return {"rows": rows, "networks": nets}


def _separable_rows(sep: pd.DataFrame, shape: dict) -> list[dict]:
    return [{"problem": problem_name(s), "shape": shape[s["problem"]],
             "params": _percent(s["params_ratio"]), "flops": _percent(s["flops_ratio"]),
             "best": s["best_standard"] or "none",
             "algo": analysis.algorithm_of(s["best_standard"] or ""),
             "standard": ms(s["standard_s"]), "separable": ms(s["separable_s"]),
             "speedup": times(s["speedup"]),
             "accurate": "" if pd.isna(s["accurate"]) else ("yes" if s["accurate"] else "no")}
            for _, s in sep.iterrows()]


def _baseline_table(t: pd.DataFrame) -> dict:
    """`analysis.baseline_ratios` for the template: ``{"name", "algos", "rows"}`` (empty
    rows when the run has no counted torch row).  Ratios below 1 are marked faster."""
    if t.empty:
        return {"name": baselines.title("torch"), "algos": [], "rows": []}
    algos = analysis.baseline_ratio_algorithms(t)

    def cell(v):
        return {"text": "" if pd.isna(v) else f"{float(v):.2f}",
                "faster": bool(pd.notna(v) and v < 1)}

    rows = [{"layer": r["layer"], "ms": ms(r["baseline_s"]), "mean": i == len(t) - 1,
             "ratios": [cell(r[a]) for a in algos], "best": cell(r[analysis.BEST_CONVBENCH]),
             "by": r["best_algorithm"], "algo": analysis.algorithm_of(r["best_algorithm"] or "")}
            for i, (_, r) in enumerate(t.iterrows())]
    return {"name": baselines.title("torch"), "rows": rows,
            "algos": [{"name": baselines.title(a), "algo": analysis.algorithm_of(a)}
                      for a in algos]}


def _frontier_rows(pts: pd.DataFrame, shape: dict) -> list[dict]:
    """The frontier points of `analysis.accuracy_speed`, by group, fastest last."""
    front = pts[pts["on_frontier"]]
    out = []
    for key, g in front.groupby(list(analysis.FRONTIER_GROUP), sort=True, dropna=False):
        group = analysis.frontier_group_text(dict(zip(analysis.FRONTIER_GROUP, key,
                                                      strict=True)))
        out += [{"group": group, "problem": problem_name(p), "shape": shape[p["problem"]],
                 "label": p["label"], "algo": p["algorithm"], "err": sci(p["error"]),
                 "speedup": times(p["speedup"]), "direct": ms(p["direct_s"]),
                 "ms": ms(p["median_s"])}
                for _, p in g.sort_values(["speedup", "error"]).iterrows()]
    return out


def _nnpack_rows(t: pd.DataFrame, shape: dict) -> list[dict]:
    return [{"layer": r["layer"], "table_name": r["table_name"], "shape": shape[r["problem"]],
             "n": _int(r["n"]), "winner": r["winner"] or "none",
             "algo": analysis.algorithm_of(r["winner"]) if r["winner"] else "",
             "family": r["family"], "published": r["published_winner"],
             "published_family": r["published_family"], "published_ms": f"{r['published_ms']:g}",
             "agree": "" if pd.isna(r["agree"]) else
             ("yes" if r["agree"] else "tied" if r["tied"] else "no"),
             "note": "" if pd.isna(r["counterpart"]) or r["counterpart"]
             else "no counterpart in NNPACK"}
            for _, r in t.iterrows()]


# Fewer problems than this teach a tree nothing worth reading: the section is left out.
MODEL_MIN_PROBLEMS = 10


def winner_model(df: pd.DataFrame) -> dict:
    """The winner model (`convbench.model`) fitted on this run's CPU rows alone: its rules, one
    line per leaf, and its regret under cross-validation ({} for a run of fewer than
    `MODEL_MIN_PROBLEMS` problems)."""
    from . import choices, model

    entries = {k: e for k, e in choices.entries_of_rows(df).items() if e["device"] == "cpu"}
    if len(entries) < MODEL_MIN_PROBLEMS:
        return {}
    s = model.summary(model.regret(entries))
    return {"rules": model.fit(entries).rules().splitlines(), "problems": s["problems"],
            "regret": f"median {s['median']:.2f}, worst {s['worst']:.2f}, total "
                      f"{s['total']:.2f}; the winner predicted for {s['top1']:.0%} of the "
                      "problems", "folds": model.FOLDS}


def _all_rows(df: pd.DataFrame, shape: dict) -> list[dict]:
    out = []
    for _, r in df.iterrows():
        acc = r["accurate"]
        out.append({
            "problem": problem_name(r), "shape": shape[r["problem"]],
            "algorithm": baselines.title(analysis.label(r["algorithm"], r["device"])),
            "algo": r["algorithm"], "operator": r["operator"], "status": r["status"],
            "reason": r["reason"] if isinstance(r["reason"], str) else "",
            "ms": ms(r["median_s"]),
            "iqr": (f"{ms(r['q1_s'])}\u2013{ms(r['q3_s'])}"
                    if pd.notna(r["q1_s"]) and pd.notna(r["q3_s"]) else ""),
            "gflops": num(r["gflops"]), "err": sci(r["max_rel_err"]),
            "peak": _percent(r.get("peak_fraction")),
            "bandwidth": _percent(r.get("bandwidth_fraction"))
            + (f" ({r['memory_level']})" if isinstance(r.get("memory_level"), str) else ""),
            "tolerance": sci(r["tolerance"]),
            "accurate": "" if pd.isna(acc) else ("yes" if acc else "no"),
            "warnings": r["warnings"] if isinstance(r["warnings"], str) else "",
        })
    return out


def accuracy(df: pd.DataFrame) -> list[dict]:
    """Per algorithm: tolerance, results within it, worst and median error, headroom."""
    ok = df[(df["status"] == "ok") & df["max_rel_err"].notna()]
    out = []
    for algo in plots.algorithm_order(ok["algorithm"]):
        for device, g in ok[ok["algorithm"] == algo].groupby("device", sort=True):
            err = g["max_rel_err"].astype(float)
            tol = g["tolerance"].astype(float)
            within = int(g["accurate"].fillna(False).astype(bool).sum())
            out.append({
                "algorithm": baselines.title(analysis.label(algo, device)), "algo": algo,
                "tolerance": ", ".join(sci(t) for t in sorted(tol.dropna().unique())),
                "within": f"{within} of {len(g)}", "all": within == len(g),
                "worst": sci(err.max()), "median": sci(err.median()),
                "l2": sci(g["rel_l2_err"].astype(float).max()),
                "headroom": times((tol / err.where(err > 0)).min()),
            })
    return out


def _inaccurate_rows(df: pd.DataFrame) -> list[dict]:
    bad = df[(df["status"] == "ok") & ~df["accurate"].fillna(True).astype(bool)]
    return [{"problem": problem_name(r), "algorithm": analysis.label(r["algorithm"], r["device"]),
             "algo": r["algorithm"], "err": sci(r["max_rel_err"]),
             "tolerance": sci(r["tolerance"])} for _, r in bad.iterrows()]


# ---------------------------------------------------------------------------------------------
# Machine and warnings

def _gib(v) -> str:
    return "" if v is None else f"{float(v) / (1 << 30):.1f} GiB"


def environment(meta: dict) -> list[tuple[str, str]]:
    """(label, value) pairs from ``meta.json``, in reading order; missing fields are left
    out."""
    m = meta.get("machine") or {}
    rows = [("CPU", " ".join(str(x) for x in (m.get("cpu_model"),
                                              f"({m['cpu_name']})" if m.get("cpu_name") else "")
                             if x).strip())]
    cores = m.get("cores")
    if cores is not None:
        usable = m.get("cores_usable")
        rows.append(("Cores", f"{cores}" + (f" ({usable} usable)" if usable not in (None, cores)
                                            else "")))
    threads = [f"{meta['threads']} Numba threads" if meta.get("threads") else "",
               f"BLAS {meta['blas_threads']} per thread" if meta.get("blas_threads") else "",
               f"threading layer {m['numba_threading_layer']}"
               if m.get("numba_threading_layer") else ""]
    rows.append(("Threads", ", ".join(t for t in threads if t)))
    if m.get("memory_bytes"):
        rows.append(("Memory", _gib(m["memory_bytes"]) + (
            f" (workspace budget per case {_gib(meta['memory_budget'])})"
            if meta.get("memory_budget") else "")))
    for b in m.get("blas") or []:
        parts = [b.get("internal_api"), b.get("version"),
                 f"{b['architecture']} kernel" if b.get("architecture") else None,
                 f"{b['num_threads']} thread{'s' if b.get('num_threads') != 1 else ''}"
                 if b.get("num_threads") is not None else None,
                 b.get("threading_layer"), b.get("prefix")]
        rows.append(("BLAS", ", ".join(str(p) for p in parts if p)))
    if m.get("load_average"):
        rows.append(("Load average", " / ".join(f"{v:.2f}" for v in m["load_average"])
                     + " (1, 5, 15 minutes, at the start)"))
    for key, text in machine_warnings(meta):
        rows.append((key.replace("_", " ").capitalize(), text))
    if m.get("env"):
        rows.append(("Environment", "  ".join(f"{k}={v}" for k, v in sorted(m["env"].items()))))
    versions = m.get("versions") or {}
    if versions:
        rows.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)))
    if m.get("platform"):
        rows.append(("Platform", str(m["platform"]) + (f" on {m['hostname']}"
                                                       if m.get("hostname") else "")))
    gpu = m.get("gpu") or {}
    if gpu.get("available"):
        details = [f"compute capability {'.'.join(map(str, gpu['compute_capability']))}"
                   if gpu.get("compute_capability") else "",
                   f"driver {gpu['driver']}" if gpu.get("driver") else "",
                   "simulated: times say nothing about a GPU" if gpu.get("simulated") else ""]
        details = ", ".join(d for d in details if d)
        rows.append(("GPU", str(gpu.get("name") or "yes") + (f" ({details})" if details else "")))
    elif gpu:
        rows.append(("GPU", f"none ({gpu.get('reason') or 'not available'})"))
    if m.get("git_commit"):
        rows.append(("Git commit", str(m["git_commit"])))
    rows.append(("Start", _date(meta.get("start"))))
    rows.append(("End", _date(meta.get("end")) if meta.get("end") else "not finished"))
    for when in meta.get("resumed") or []:
        rows.append(("Resumed", _date(when)))
    if m.get("cpu_features"):
        rows.append(("CPU features", " ".join(map(str, m["cpu_features"]))))
    return [(k, v) for k, v in rows if v]


def machine_warnings(meta: dict) -> list[tuple[str, str]]:
    """The machine record's warnings (``blas_warning``, ``load_warning``, any ``*_warning``):
    (key, sentence) pairs."""
    m = meta.get("machine") or {}
    return [(k, str(v)) for k, v in m.items() if k.endswith("_warning") and v]


def warnings(df: pd.DataFrame, meta: dict) -> list[dict]:
    """Every warning of the run: ``{"kind", "where", "text"}``."""
    out = [{"kind": "machine", "where": key.removesuffix("_warning").upper()
            if key == "blas_warning" else key.removesuffix("_warning"), "text": text}
           for key, text in machine_warnings(meta)]
    if not meta.get("complete", True) or not meta.get("end"):
        out.append({"kind": "run", "where": "run", "text":
                    "The run did not finish: rows are those measured before it stopped "
                    "(convbench run sweep --resume finishes it)."})
    for _, r in df.iterrows():
        where = f"{problem_name(r)} {analysis.label(r['algorithm'], r['device'])}"
        if r["status"] == "error":
            out.append({"kind": "error", "where": where, "text": str(r["reason"] or "")})
        if r["status"] == "ok" and not pd.isna(r["accurate"]) and not bool(r["accurate"]):
            out.append({"kind": "inaccurate", "where": where, "text":
                        f"error {sci(r['max_rel_err'])} exceeds tolerance "
                        f"{sci(r['tolerance'])}: not ranked"})
        text = r["warnings"] if isinstance(r["warnings"], str) else ""
        for w in filter(None, (t.strip() for t in re.split(r";\s*", text))):
            out.append({"kind": "timing", "where": where, "text": w})
    return out
