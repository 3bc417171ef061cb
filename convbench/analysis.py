"""Answers from rows: DataFrame in, DataFrame out.  Runs nothing.

Every function takes the rows of a run (`store.COLUMNS`) and returns a new DataFrame:

- `ranked`: the rows that may win; `noise`: how far a median can be trusted;
- `winners`: per problem, the fastest ranked algorithm, its ties and its runner-up;
- `crossovers`: where, along a swept axis, one algorithm overtakes another (`swept_pairs`:
  which pairs were compared along which axis);
- `ratios`: every time against a baseline algorithm's;
- `baseline_ratios`: per layer, each algorithm's time over a baseline library's (torch), a
  table with the best convbench algorithm and a geometric-mean line;
- `network_summary`: per layer winners and network totals, best per layer vs one algorithm;
- `separable_savings`: MobileNet's depthwise-separable factorisation: parameters, FLOPs, time;
- `accuracy_speed`: the fast algorithms' speed-up over direct against their error, and the
  Pareto frontier of each filter size and stride;
- `nnpack_comparison`: per layer of NNPACK's published table, convbench's winning family
  against NNPACK's.

Vocabulary.  An algorithm is named by its *label*: the registry name on the CPU
(``"direct"``), ``name@device`` elsewhere (``"direct@cuda"``).  Two times are *tied* when
their interquartile intervals ``[q1, q3]`` overlap or their ratio is below
``1 + max(noise_a, noise_b)``; otherwise they are *decisively* ordered.  The same rule
decides ties among winners and the points that count for a crossover.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from . import published

__all__ = ["ranked", "counted", "simulated", "label", "noise", "tied", "winners", "winners_table",
           "crossovers", "swept_pairs", "ratios", "baseline_ratios", "baseline_ratio_algorithms",
           "baselines", "network_summary", "separable_savings", "training_step",
           "accuracy_speed", "frontier_group_text", "nnpack_comparison",
           "algorithm_of", "shape_label", "context_text",
           "AXES", "CONTEXT", "DEFAULT_AXES", "IDENTITY", "PROBLEM_FIELDS", "NOISE_FLOOR",
           "NOT_A_LAYER", "BEST_PER_LAYER"]

# A relative spread below 1 % is not believed: timer resolution, frequency scaling and
# other tenants of the machine move repeated runs by about that much even when a single
# run's quartiles coincide.
NOISE_FLOOR = 0.01

# The fields that identify a problem's shape and type (the name and count do not): problems
# that agree on all of them but one lie on a sweep along that one.
IDENTITY = ("n", "c", "h", "w", "k", "r", "s", "sh", "sw", "dh", "dw", "padding", "groups",
            "dtype", "direction")
# The fields that, with the filter size and stride, make a problem: rows that share them are
# one *context* of a filter sweep (one line chart, one winner map, one winner sentence).
CONTEXT = tuple(f for f in IDENTITY if f not in ("r", "s", "sh", "sw"))
# The problem fields every result frame below carries, for plotting and grouping.
PROBLEM_FIELDS = ("r", "s", "sh", "sw", "c", "k", "h", "w", "n", "groups", "dtype", "direction")

# Sweepable axes: field -> (words for a sentence, the field that must equal it).  A filter
# sweep uses square filters only (r == s), a stride sweep square strides, an image-size
# sweep square images, so that one number names each point.
AXES = {
    "r": ("filter", "s"),
    "sh": ("stride", "sw"),
    "c": ("input channels", None),
    "k": ("output channels", None),
    "h": ("image size", "w"),
    "n": ("batch", None),
    "dh": ("dilation", "dw"),
}
DEFAULT_AXES = ("r", "sh", "c", "k", "h", "n")

# MobileNet's preset measures, beside each depthwise/pointwise pair, the standard conv the
# pair replaces (``mobilenet:conv_std_<i>``): a comparison, not a layer of the network, so
# network totals leave it out (see convbench/presets/mobilenet.toml).
NOT_A_LAYER = r":conv_std_\d+$"

WINNER_COLUMNS = ["problem", "name", "count", "winner", "device", "median_s", "q1_s", "q3_s",
                  "gflops", "ties", "runner_up", "runner_up_ratio", "n_ranked",
                  *PROBLEM_FIELDS, "dh", "dw", "padding", "stride", "oh", "ow", "flops"]
CROSSOVER_COLUMNS = ["axis", "axis_label", "lo", "hi", "before", "after", "context",
                     *IDENTITY, "ratio_lo", "ratio_hi", "winner_changed", "sentence"]
RATIO_COLUMNS = ["problem", "name", "algorithm", "family", "device", "label", "operator",
                 "accurate", "max_rel_err", "median_s", "baseline", "baseline_s", "ratio",
                 *PROBLEM_FIELDS]
LAYER_COLUMNS = ["network", "name", "problem", "count", "winner", "median_s", "total_s",
                 "ties", "n_ranked", *PROBLEM_FIELDS]
TOTAL_COLUMNS = ["network", "algorithm", "total_s", "vs_best_per_layer", "n_layers",
                 "complete"]
SEPARABLE_COLUMNS = ["problem", "name", "count", "n", "c", "k", "h", "w", "r", "s", "sh", "sw",
                     "stride", "oh", "ow", "device", "accurate",
                     "standard_params", "separable_params", "params_ratio",
                     "standard_flops", "separable_flops", "flops_ratio",
                     "best_standard", "standard_s", "separable_s", "time_ratio", "speedup",
                     "separable_gflops"]
BEST_PER_LAYER = "best per layer"
# The family of other libraries' convolutions (`convbench.baselines`): shown, compared against,
# never ranked.
BASELINE = "baseline"
BEST_CONVBENCH = "best convbench"
GEOMEAN = "geometric mean"


# ---------------------------------------------------------------------------------------------
# Rows, labels, noise, ties

def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that can win: ``ok``, accurate, timed, and computing the standard convolution (the
    separable operator computes a different function, so it is compared, not ranked), on
    real hardware (the CUDA simulator's times say nothing about a GPU), and convbench's own
    (`baselines` rows, other libraries' convolutions, are references to compare against)."""
    rows = counted(df)
    return rows[~baselines(rows)]


def counted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose time counts: ``ok``, accurate, timed standard convolutions, not simulated
    (`ranked`'s rule, baselines kept)."""
    if df.empty or "median_s" not in df:
        return df.iloc[0:0]
    mask = ((df["status"] == "ok") & df["accurate"].fillna(False).astype(bool)
            & (df["operator"] == "conv") & df["median_s"].notna() & ~simulated(df))
    return df[mask.fillna(False).astype(bool)]


def baselines(df: pd.DataFrame) -> pd.Series:
    """Rows of family ``baseline`` (another library's convolution)."""
    if "family" not in df:
        return pd.Series(False, index=df.index)
    return (df["family"] == BASELINE).fillna(False).astype(bool)


def simulated(df: pd.DataFrame) -> pd.Series:
    """Rows timed on the CUDA simulator (runs before the ``simulated`` column: none)."""
    if "simulated" not in df:
        return pd.Series(False, index=df.index)
    return df["simulated"].fillna(False).astype(bool)


def label(algorithm: str, device: str | None = "cpu") -> str:
    """An algorithm's name in tables: ``direct`` on the CPU, ``direct@cuda`` on a GPU."""
    cpu = device is None or pd.isna(device) or device in ("", "cpu")  # NA: older rows
    return algorithm if cpu else f"{algorithm}@{device}"


def algorithm_of(label_: str) -> str:
    """The algorithm of a `label`: ``direct`` of ``direct`` and of ``direct@cuda``."""
    return label_.split("@", 1)[0]


def shape_label(row) -> str:
    """A problem in a few words: ``32→64 3×3 s2 dw @112`` (channels, filter, stride when not
    1, ``dw`` for depthwise or ``gN`` for groups, input size)."""
    text = f"{row['c']}\u2192{row['k']} {row['r']}\u00d7{row['s']}"
    if int(row["sh"]) != 1 or int(row["sw"]) != 1:
        text += f" s{row['sh']}" if row["sh"] == row["sw"] else f" s{row['sh']}x{row['sw']}"
    if int(row["groups"]) != 1:
        text += " dw" if int(row["groups"]) == int(row["c"]) else f" g{row['groups']}"
    text += f" @{row['h']}"
    direction = row.get("direction", "fwd")
    return text if direction in ("fwd", None) or pd.isna(direction) else f"{text} {direction}"


def _labels(df: pd.DataFrame) -> pd.Series:
    return pd.Series([label(a, d) for a, d in zip(df["algorithm"], df["device"], strict=True)],
                     index=df.index, dtype=object)


def noise(row_or_df):
    """Relative noise of a measurement: ``(q3_s - q1_s) / median_s``, at least `NOISE_FLOOR`.

    Parameters
    ----------
    row_or_df : pandas.Series, mapping or pandas.DataFrame
        One row (gives a float) or rows (gives a Series aligned with them).  A row without
        quartiles (one value, or not timed) gets the floor.
    """
    if isinstance(row_or_df, pd.DataFrame):
        q1, q3, med = (pd.to_numeric(row_or_df[c], errors="coerce").astype(float)
                       for c in ("q1_s", "q3_s", "median_s"))
        rel = (q3 - q1) / med
        return rel.where(rel > NOISE_FLOOR, NOISE_FLOOR)  # NaN (missing) -> the floor too
    q1, q3, med = (_float(row_or_df[c]) for c in ("q1_s", "q3_s", "median_s"))
    rel = (q3 - q1) / med if med else math.nan
    return rel if rel > NOISE_FLOOR else NOISE_FLOOR


def _float(v) -> float:
    return math.nan if v is None or pd.isna(v) else float(v)


def tied(a, b) -> bool:
    """Whether two measured rows are indistinguishable: their ``[q1, q3]`` intervals overlap,
    or their medians' ratio is within ``1 + max(noise(a), noise(b))``."""
    qa1, qa3, qb1, qb3 = (_float(x[c]) for x in (a, b) for c in ("q1_s", "q3_s"))
    if qa1 <= qb3 and qb1 <= qa3:  # False when a quartile is missing
        return True
    return abs(math.log(_float(a["median_s"]) / _float(b["median_s"]))) <= math.log1p(
        max(noise(a), noise(b)))


# ---------------------------------------------------------------------------------------------
# Winners

def winners(df: pd.DataFrame) -> pd.DataFrame:
    """The fastest ranked algorithm of each problem.

    Only `ranked` rows compete, so a fast but inaccurate row never wins.

    Returns
    -------
    pandas.DataFrame
        One row per (problem, name), in run order: ``problem, name, count``; ``winner`` (its
        label), ``device``, its ``median_s, q1_s, q3_s, gflops``; ``ties``: the other
        algorithms `tied` with the winner, comma-separated, fastest first ("" when none);
        ``runner_up`` (the second fastest, tied or not; "" when the winner ran alone) and
        ``runner_up_ratio`` (its time / the winner's); ``n_ranked``: how many competed; then
        the problem fields (`PROBLEM_FIELDS`, ``dh, dw, padding, stride, oh, ow, flops``).
    """
    r = ranked(df)
    if r.empty:
        return pd.DataFrame(columns=WINNER_COLUMNS)
    r = r.assign(label=_labels(r))
    out = []
    for _, g in r.groupby(["problem", "name"], sort=False, dropna=False):
        g = g.sort_values(["median_s", "label"])
        best, others = g.iloc[0], g.iloc[1:]
        second = others.iloc[0] if len(others) else None
        out.append({
            **{f: best[f] for f in WINNER_COLUMNS if f in best.index},
            "winner": best["label"],
            "ties": ", ".join(o["label"] for _, o in others.iterrows() if tied(best, o)),
            "runner_up": second["label"] if second is not None else "",
            "runner_up_ratio": (second["median_s"] / best["median_s"] if second is not None
                                else math.nan),
            "n_ranked": len(g),
        })
    return pd.DataFrame(out, columns=WINNER_COLUMNS)


def winners_table(df: pd.DataFrame) -> pd.DataFrame:
    """A short table for a terminal: per problem, the winner, its time and GFLOP/s, the
    algorithms tied with it, and the runner-up with how much slower it is."""
    w = winners(df)
    if w.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "problem": [n or p for n, p in zip(w["name"].fillna(""), w["problem"], strict=True)],
        "winner": w["winner"],
        "ms": (w["median_s"] * 1e3).round(3),
        "GFLOP/s": w["gflops"].round(1),
        "tied": w["ties"],
        "runner-up": w["runner_up"],
        "x slower": w["runner_up_ratio"].round(2),
    }).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Crossovers

def crossovers(df: pd.DataFrame, axes=DEFAULT_AXES) -> pd.DataFrame:
    """Where, along a swept axis, one algorithm overtakes another.

    A *context* is a set of ranked problems that agree on every `IDENTITY` field but the axis
    (and its partner: ``s`` for the filter ``r``, ``sw`` for the stride ``sh``, ``w`` for the
    image size ``h``; those axes use square problems only).  Within a context with at least
    two axis values, each pair of algorithms ranked at two or more of its points is walked
    in increasing axis order.  A point where the two are `tied` is skipped: it neither starts
    nor ends an order.  Where the faster of the two differs between consecutive *decisive*
    points ``lo`` and ``hi``, there is a crossover in the interval ``(lo, hi)``; several
    along one axis are all reported.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of a run.
    axes : sequence of str
        Fields to sweep, among `AXES` (default `DEFAULT_AXES`: filter, stride, input and
        output channels, image size, batch).

    Returns
    -------
    pandas.DataFrame
        One row per crossover (`CROSSOVER_COLUMNS`): ``axis``, ``axis_label`` (words:
        "filter", "stride", ...), ``lo``, ``hi``, ``before`` (faster at ``lo``), ``after``
        (faster at ``hi``), ``context`` (the fixed fields in words, e.g. "stride 1, 32→32
        channels, 64x64"), the `IDENTITY` fields (missing for the axis and its partner),
        ``ratio_lo`` (``after``'s time / ``before``'s at ``lo``, > 1), ``ratio_hi``
        (``before``'s / ``after``'s at ``hi``, > 1), ``winner_changed`` (``before`` wins
        the whole problem at ``lo`` and ``after`` at ``hi``), and ``sentence``, e.g. "fft
        overtakes direct between filter 7 and 9 at stride 1, 32→32 channels, 64x64".
        Empty, with these columns, when there is none.
    """
    found = []
    for axis, words, ctx, g in _contexts(df, axes):
        found += _walk_context(g, axis, words, ctx)
    if not found:
        return pd.DataFrame(columns=CROSSOVER_COLUMNS)
    out = pd.DataFrame(found, columns=CROSSOVER_COLUMNS)
    ints = [f for f in IDENTITY if f not in ("padding", "dtype", "direction")]
    return out.astype({**dict.fromkeys(ints, "Int64"), "lo": int, "hi": int,
                       "winner_changed": bool})


def swept_pairs(df: pd.DataFrame, axes=DEFAULT_AXES) -> pd.DataFrame:
    """The pairs of algorithms `crossovers` walks: both ranked at two or more points of a
    context.  Columns ``axis, context, a, b`` (``a < b``) and ``points`` (how many)."""
    out = []
    for axis, _, ctx, g in _contexts(df, axes):
        text = context_text(ctx, axis)
        for (a, b), xs in _pair_points(g, axis).items():
            out.append({"axis": axis, "context": text, "a": a, "b": b, "points": len(xs)})
    return pd.DataFrame(out, columns=["axis", "context", "a", "b", "points"])


def _contexts(df: pd.DataFrame, axes):
    """``(axis, words, fixed fields, ranked rows)`` for every context with >= 2 axis values."""
    bad = [a for a in axes if a not in AXES]
    if bad:
        raise ValueError(f"crossovers: unknown axis {bad[0]!r} (allowed: {', '.join(AXES)})")
    r = ranked(df)
    if r.empty:
        return
    r = r.assign(label=_labels(r), noise=noise(r))
    # one point per problem and algorithm (a problem measured under two layer names is one)
    r = r.drop_duplicates(subset=["problem", "label"]).reset_index(drop=True)
    for axis in axes:
        words, partner = AXES[axis]
        sub = r if partner is None else r[r[axis] == r[partner]]
        fixed = [f for f in IDENTITY if f not in (axis, partner)]
        for key, g in sub.groupby(fixed, sort=True, dropna=False):
            if g[axis].nunique() >= 2:
                yield axis, words, dict(zip(fixed, key, strict=True)), g


def _pair_points(g: pd.DataFrame, axis: str) -> dict:
    """``{(a, b): sorted axis values where both are ranked}`` for pairs on >= 2 points."""
    at = g.groupby("label")[axis].agg(lambda x: set(x.astype(int)))
    out = {}
    for a, b in combinations(sorted(at.index), 2):
        xs = sorted(at[a] & at[b])
        if len(xs) >= 2:
            out[(a, b)] = xs
    return out


def _walk_context(g: pd.DataFrame, axis: str, words: str, ctx: dict) -> list[dict]:
    """The crossovers of every pair of algorithms within one context."""
    points = {(int(x), lab): row for x, lab, row in zip(g[axis], g["label"],
                                                         (row for _, row in g.iterrows()),
                                                         strict=True)}
    best = g.loc[g.groupby(axis)["median_s"].idxmin()]
    winner_at = dict(zip(best[axis].astype(int), best["label"], strict=True))
    text = context_text(ctx, axis)
    found = []
    for (a, b), both in _pair_points(g, axis).items():
        last = None  # (axis value, faster label) at the last decisive point
        for x in both:
            pa, pb = points[(x, a)], points[(x, b)]
            if tied(pa, pb):
                continue
            faster = a if pa["median_s"] < pb["median_s"] else b
            if last is not None and faster != last[1]:
                lo, before = last
                after = faster
                t = {lab: points[(lo, lab)]["median_s"] for lab in (a, b)}
                u = {lab: points[(x, lab)]["median_s"] for lab in (a, b)}
                found.append({
                    "axis": axis, "axis_label": words, "lo": lo, "hi": x,
                    "before": before, "after": after, "context": text, **ctx,
                    "ratio_lo": t[after] / t[before], "ratio_hi": u[before] / u[after],
                    "winner_changed": winner_at[lo] == before and winner_at[x] == after,
                    "sentence": f"{after} overtakes {before} between {words} {lo} and {x} "
                                f"at {text}",
                })
            last = (x, faster)
    return found


def context_text(f: dict, axis: str) -> str:
    """The fields a context fixes, in words: "3x3 filter, stride 1, 32→32 channels, 64x64"."""
    parts = []
    if axis != "r":
        parts.append(f"{f['r']}x{f['s']} filter")
    if axis != "sh":
        parts.append(f"stride {f['sh']}" if f["sh"] == f["sw"] else f"stride {f['sh']}x{f['sw']}")
    if axis == "c":
        parts.append(f"{f['k']} output channels")
    elif axis == "k":
        parts.append(f"{f['c']} input channels")
    else:
        parts.append(f"{f['c']}→{f['k']} channels")
    if axis != "h":
        parts.append(f"{f['h']}x{f['w']}")
    if axis != "n" and f["n"] != 1:
        parts.append(f"batch {f['n']}")
    if f["groups"] != 1:
        parts.append("depthwise" if axis != "c" and f["groups"] == f["c"]
                     else f"groups {f['groups']}")
    if axis != "dh" and (f["dh"], f["dw"]) != (1, 1):
        parts.append(f"dilation {f['dh']}" if f["dh"] == f["dw"]
                     else f"dilation {f['dh']}x{f['dw']}")
    if f["padding"] != "same":
        parts.append(f"padding {f['padding']}")
    if f["dtype"] != "float32":
        parts.append(f["dtype"])
    if f.get("direction", "fwd") not in ("fwd", None) and not pd.isna(f.get("direction")):
        parts.append(DIRECTION_WORDS[f["direction"]])
    return ", ".join(parts)


DIRECTION_WORDS = {"fwd": "forward", "bwd_d": "gradient of the input",
                   "bwd_w": "gradient of the weights"}


# ---------------------------------------------------------------------------------------------
# Ratios, networks, separable

def ratios(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Every ``ok`` row's time against a baseline algorithm's on the same problem (rows timed
    on the CUDA simulator left out).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of a run.
    baseline : str
        The baseline's label: an algorithm name on the CPU (``"direct"``) or
        ``"name@device"``.

    Returns
    -------
    pandas.DataFrame
        One row per ``ok`` row (inaccurate and separable rows included: see ``accurate`` and
        ``operator``): ``problem, name, algorithm, family, device, label, operator, accurate,
        max_rel_err, median_s``, ``baseline`` (the label asked for), ``baseline_s`` and
        ``ratio`` =
        ``median_s / baseline_s`` (NaN where the baseline has no ``ok`` row on the problem),
        and the problem fields.
    """
    ok = (df[(df["status"] == "ok") & df["median_s"].notna() & ~simulated(df)]
          if not df.empty else df)
    if ok.empty:
        return pd.DataFrame(columns=RATIO_COLUMNS)
    ok = ok.assign(label=_labels(ok))
    base = (ok[ok["label"] == baseline].drop_duplicates(subset=["problem", "name"])
            .set_index(["problem", "name"])["median_s"])
    keys = pd.MultiIndex.from_frame(ok[["problem", "name"]])
    base_s = base.reindex(keys).to_numpy(dtype=float)
    out = ok.assign(baseline=baseline, baseline_s=base_s,
                    ratio=ok["median_s"].to_numpy(dtype=float) / base_s)
    return out[RATIO_COLUMNS].reset_index(drop=True)


def layer_label(row) -> str:
    """A row's layer in a table: its name (else its problem id), with the direction when it
    is a gradient (``resnet50:conv1 bwd_w``), so that a layer's three rows stay apart."""
    name = row["name"] if isinstance(row["name"], str) and row["name"] else row["problem"]
    direction = row.get("direction", "fwd")
    if isinstance(direction, str) and direction != "fwd" and not name.endswith(direction):
        return f"{name} {direction}"
    return name


def baseline_ratios(df: pd.DataFrame, baseline: str = "torch") -> pd.DataFrame:
    """Per layer, each algorithm's median time over a baseline's: below 1 is faster.

    Only results that count are compared: ``ok``, accurate, timed standard convolutions, not
    simulated (`ranked`'s rule, with baseline rows allowed), and the baseline's own row must be
    one of them.  A problem measured under several layer names is one line per name.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of a run.
    baseline : str
        The label of the baseline (default ``torch``: PyTorch's oneDNN ``conv2d``).

    Returns
    -------
    pandas.DataFrame
        Empty (no columns) when the baseline has no counted row.  Otherwise one row per layer
        where the baseline counted, in run order, then a last row: ``layer`` (`layer_label`;
        `GEOMEAN` on the last row), ``problem``, ``baseline_s`` (the
        baseline's median seconds), one column per other algorithm label (convbench's in the
        order met in the rows, then other baselines), each ``median_s / baseline_s`` (NaN
        where it did not count), ``best convbench`` (`BEST_CONVBENCH`: the fastest counted
        non-baseline algorithm's ratio) and ``best_algorithm`` (its label).  The last row holds
        each column's geometric mean over the layers where it has a value (so two columns'
        means cover different layers when one algorithm does not support them all; the
        ``best convbench`` mean covers every layer that had one); it is unweighted: every
        distinct layer counts once, whatever its ``count``.
    """
    rows = counted(df)
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(label=_labels(rows), is_base=baselines(rows))
    base = rows[rows["label"] == baseline].drop_duplicates(subset=["problem", "name"])
    if base.empty:
        return pd.DataFrame()
    others = rows[rows["label"] != baseline]
    own = list(dict.fromkeys(others.loc[~others["is_base"], "label"]))
    labels = own + list(dict.fromkeys(others.loc[others["is_base"], "label"]))
    times = others.drop_duplicates(subset=["problem", "name", "label"]).set_index(
        ["problem", "name", "label"])["median_s"]
    out = []
    for _, b in base.iterrows():
        t0 = float(b["median_s"])
        line = {"layer": layer_label(b), "problem": b["problem"], "baseline_s": t0}
        for lab in labels:
            key = (b["problem"], b["name"], lab)
            line[lab] = float(times[key]) / t0 if key in times.index else math.nan
        mine = {lab: line[lab] for lab in labels if lab in own and not math.isnan(line[lab])}
        best = min(mine, key=lambda lab: (mine[lab], lab)) if mine else ""
        line[BEST_CONVBENCH] = mine[best] if best else math.nan
        line["best_algorithm"] = best
        out.append(line)
    table = pd.DataFrame(out, columns=["layer", "problem", "baseline_s", *labels,
                                       BEST_CONVBENCH, "best_algorithm"])
    mean = {"layer": GEOMEAN, "problem": "", "baseline_s": math.nan, "best_algorithm": ""}
    for col in [*labels, BEST_CONVBENCH]:
        v = table[col].dropna().astype(float)
        mean[col] = math.exp(sum(math.log(x) for x in v) / len(v)) if len(v) else math.nan
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def baseline_ratio_algorithms(table: pd.DataFrame) -> list[str]:
    """The algorithm columns of a `baseline_ratios` table, in its order."""
    fixed = ("layer", "problem", "baseline_s", BEST_CONVBENCH, "best_algorithm")
    return [c for c in table.columns if c not in fixed]


def network_summary(df: pd.DataFrame, exclude: str | None = NOT_A_LAYER):
    """Per-layer winners of each network in a run, and what the network costs in total.

    A network is the rows whose layer name has a prefix ``net:`` (``resnet50:conv1``); the
    network's name is ``net``.  Each layer weighs its ``count`` (how many times it occurs).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of a run.
    exclude : str or None
        A regular expression: layer names it matches are not layers of the network and are
        left out (default `NOT_A_LAYER`: MobileNet's ``conv_std_<i>`` comparisons).

    Returns
    -------
    layers : pandas.DataFrame
        One row per layer, in run order (`LAYER_COLUMNS`): ``network, name, problem,
        count``, ``winner`` ("" when no algorithm ranked), its ``median_s``, ``total_s`` =
        ``median_s * count``, ``ties``, ``n_ranked``, the problem fields.
    totals : pandas.DataFrame
        Per network (`TOTAL_COLUMNS`): first the row ``algorithm = "best per layer"``: the
        sum of every layer's winning time times its count; then each algorithm ranked on
        every layer of the network, with the sum of its own times times the counts, fastest
        first.  ``vs_best_per_layer`` is ``total_s`` over the best-per-layer total;
        ``n_layers`` the layers summed; ``complete`` whether that is every layer (the
        best-per-layer sum skips layers where nothing ranked).
    """
    if df.empty:
        return pd.DataFrame(columns=LAYER_COLUMNS), pd.DataFrame(columns=TOTAL_COLUMNS)
    names = df["name"].fillna("").astype(str)
    net = names.str.extract(r"^([^:]+):.", expand=False)
    keep = net.notna()
    if exclude:
        keep &= ~names.str.contains(exclude, regex=True)
    rows = df[keep.astype(bool)].assign(network=net[keep.astype(bool)])
    if rows.empty:
        return pd.DataFrame(columns=LAYER_COLUMNS), pd.DataFrame(columns=TOTAL_COLUMNS)
    win = winners(rows).set_index(["problem", "name"])
    layer_rows = rows.drop_duplicates(subset=["problem", "name"])
    layers = []
    for _, row in layer_rows.iterrows():
        key = (row["problem"], row["name"])
        w = win.loc[key] if key in win.index else None
        t = w["median_s"] if w is not None else math.nan
        layers.append({
            **{f: row[f] for f in ("network", "name", "problem", "count", *PROBLEM_FIELDS)},
            "winner": w["winner"] if w is not None else "",
            "median_s": t, "total_s": t * row["count"],
            "ties": w["ties"] if w is not None else "",
            "n_ranked": int(w["n_ranked"]) if w is not None else 0,
        })
    layers = pd.DataFrame(layers, columns=LAYER_COLUMNS)

    r = ranked(rows)
    r = r.assign(label=_labels(r), weighted=r["median_s"] * r["count"].astype(float))
    totals = []
    for network, lay in layers.groupby("network", sort=False):
        n_all = len(lay)
        have = lay[lay["winner"] != ""]
        best = float(have["total_s"].sum()) if len(have) else math.nan
        totals.append({"network": network, "algorithm": BEST_PER_LAYER, "total_s": best,
                       "vs_best_per_layer": 1.0, "n_layers": len(have),
                       "complete": len(have) == n_all})
        mine = r[r["network"] == network].drop_duplicates(subset=["problem", "name", "label"])
        single = []
        for lab, g in mine.groupby("label", sort=True):
            if len(g) == n_all:  # ranked on every layer
                total = float(g["weighted"].sum())
                single.append({"network": network, "algorithm": lab, "total_s": total,
                               "vs_best_per_layer": total / best, "n_layers": n_all,
                               "complete": True})
        totals += sorted(single, key=lambda d: d["total_s"])
    return layers, pd.DataFrame(totals, columns=TOTAL_COLUMNS)


TRAINING_COLUMNS = ["network", "name", "problem", "count",
                    *(f"{d}_{f}" for d in ("fwd", "bwd_d", "bwd_w") for f in ("s", "by")),
                    "step_s", "baseline_step_s", "vs_baseline"]


def training_step(df: pd.DataFrame, baseline: str = "torch") -> pd.DataFrame:
    """What one training step of each layer costs: its forward convolution, the gradient of
    its input and of its weights, each by its own fastest ranked algorithm, against
    ``baseline``'s three.

    Returns
    -------
    pandas.DataFrame
        One row per layer measured in all three directions, in run order
        (`TRAINING_COLUMNS`): ``network`` (the layer name's prefix, "" without one),
        ``name``, ``problem`` (the forward problem's id), ``count``; per direction the best
        time ``<dir>_s`` and its label ``<dir>_by``; ``step_s`` their sum;
        ``baseline_step_s`` the baseline's sum (NaN unless it ran all three) and
        ``vs_baseline`` = ``step_s / baseline_step_s``.
    """
    win = winners(df[df["device"] == "cpu"]) if "device" in df else winners(df)
    if win.empty or "direction" not in win:
        return pd.DataFrame(columns=TRAINING_COLUMNS)
    base = counted(df)
    base = base[base["algorithm"] == baseline].set_index(["problem", "name"])["median_s"]
    win = win.assign(layer=win["problem"].str.replace(r"-bwd_[dw]$", "", regex=True))
    out = []
    for (layer, name), g in win.groupby(["layer", "name"], sort=False, dropna=False):
        by_dir = {r["direction"]: r for _, r in g.iterrows()}
        if set(by_dir) != {"fwd", "bwd_d", "bwd_w"}:
            continue
        row = {"network": (name or "").split(":")[0] if ":" in (name or "") else "",
               "name": name, "problem": layer, "count": by_dir["fwd"]["count"]}
        base_s = 0.0
        for d, r in by_dir.items():
            row[f"{d}_s"], row[f"{d}_by"] = r["median_s"], r["winner"]
            base_s += base.get((r["problem"], name), math.nan)
        row["step_s"] = sum(row[f"{d}_s"] for d in by_dir)
        row["baseline_step_s"] = base_s
        row["vs_baseline"] = row["step_s"] / base_s
        out.append(row)
    return pd.DataFrame(out, columns=TRAINING_COLUMNS)


def separable_savings(df: pd.DataFrame) -> pd.DataFrame:
    """What the depthwise-separable factorisation saves on each problem it ran ``ok`` on.

    A standard ``k x c x r x s`` convolution against a depthwise ``r x s`` convolution of the
    ``c`` input channels followed by a pointwise ``1x1``, ``c -> k`` (MobileNet):

    - parameters ``k·c·r·s`` against ``c·r·s + k·c``;
    - FLOPs (the ``flops`` column, ``2·n·k·oh·ow·c·r·s``) against ``2·n·oh·ow·(c·r·s + k·c)``;
    - time: the best `ranked` standard conv against the separable operator.

    Both count ratios equal MobileNet's ``1/k + 1/(r·s)``.

    Returns
    -------
    pandas.DataFrame
        One row per ``ok`` separable row (`SEPARABLE_COLUMNS`): the problem fields, the
        separable row's ``device`` and ``accurate``; ``standard_params, separable_params,
        params_ratio`` (separable / standard), ``standard_flops, separable_flops,
        flops_ratio``; ``best_standard`` (the fastest ranked conv's label, "" when none),
        ``standard_s``, ``separable_s``, ``time_ratio`` (separable / standard), ``speedup``
        (standard / separable), and ``separable_gflops`` (the separable FLOPs it actually
        performs per second, in 1e9).
    """
    if df.empty:
        return pd.DataFrame(columns=SEPARABLE_COLUMNS)
    sep = df[(df["operator"] == "separable") & (df["status"] == "ok") & df["median_s"].notna()
             & ~simulated(df)]
    if sep.empty:
        return pd.DataFrame(columns=SEPARABLE_COLUMNS)
    win = winners(df).set_index(["problem", "name"])
    out = []
    for _, row in sep.iterrows():
        n, c, k, r, s, oh, ow = (int(row[f]) for f in ("n", "c", "k", "r", "s", "oh", "ow"))
        std_params, sep_params = k * c * r * s, c * r * s + k * c
        std_flops, sep_flops = int(row["flops"]), 2 * n * oh * ow * (c * r * s + k * c)
        key = (row["problem"], row["name"])
        best = win.loc[key] if key in win.index else None
        std_s = float(best["median_s"]) if best is not None else math.nan
        sep_s = float(row["median_s"])
        out.append({
            **{f: row[f] for f in SEPARABLE_COLUMNS if f in row.index},
            "accurate": bool(row["accurate"]) if not pd.isna(row["accurate"]) else pd.NA,
            "standard_params": std_params, "separable_params": sep_params,
            "params_ratio": sep_params / std_params,
            "standard_flops": std_flops, "separable_flops": sep_flops,
            "flops_ratio": sep_flops / std_flops,
            "best_standard": best["winner"] if best is not None else "",
            "standard_s": std_s, "separable_s": sep_s,
            "time_ratio": sep_s / std_s, "speedup": std_s / sep_s,
            "separable_gflops": sep_flops / sep_s / 1e9 if sep_s > 0 else math.nan,
        })
    return pd.DataFrame(out, columns=SEPARABLE_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Accuracy against speed

# The families that trade accuracy for speed: every ``fft*`` and ``winograd_*`` entry
# (winograd_f23, winograd_f43, winograd_f63 where it is registered).
FAST_FAMILIES = ("fft", "winograd")
# A frontier is drawn per group of problems that share the filter size and stride (and the
# device, dtype and direction, whose errors and speeds are not comparable across): the
# transforms' error grows with the tile and the filter, their speed-up with the filter, so
# that each filter size and stride has its own trade-off; channels and image size move a
# point along it.
FRONTIER_GROUP = ("device", "dtype", "direction", "r", "s", "sh", "sw")
FRONTIER_COLUMNS = ["problem", "name", "label", "algorithm", "family", *FRONTIER_GROUP,
                    "c", "k", "h", "w", "n", "groups", "median_s", "direct_s", "speedup",
                    "error", "on_frontier"]


def accuracy_speed(df: pd.DataFrame) -> pd.DataFrame:
    """Each fast algorithm's speed-up over ``direct`` against its error, and which results
    lie on the accuracy-speed frontier.

    Only `ranked` results count, on both sides: an algorithm's result and ``direct``'s on
    the same problem and device (`ratios` against ``direct`` on that device).  Results of the
    `FAST_FAMILIES` whose problem has no such ``direct`` time, or no error, are left out.  A
    problem measured under several layer names is one point.

    Returns
    -------
    pandas.DataFrame
        One row per fast result (`FRONTIER_COLUMNS`), in run order per device: ``problem,
        name, label, algorithm, family``, the `FRONTIER_GROUP` fields, the problem's other
        fields, ``median_s``, ``direct_s`` (direct's median on the problem), ``speedup``
        (``direct_s / median_s``), ``error`` (``max_rel_err``: max|out - ref| / max|ref|)
        and ``on_frontier``: no other result of its group has an error as low and a
        speed-up as high, one of them strictly (equal points are both on it).
    """
    rows = ranked(df)
    if rows.empty or "max_rel_err" not in rows:
        return _no_points()
    rows = rows.drop_duplicates(subset=["problem", "algorithm", "device"])
    vs = pd.concat([ratios(g, label("direct", device))
                    for device, g in rows.groupby("device", sort=False)], ignore_index=True)
    fast = vs[vs["family"].isin(FAST_FAMILIES) & vs["max_rel_err"].notna()
              & vs["ratio"].notna()]
    if fast.empty:
        return _no_points()
    fast = fast.assign(direct_s=fast["baseline_s"].astype(float),
                       speedup=1.0 / fast["ratio"].astype(float),
                       error=fast["max_rel_err"].astype(float), on_frontier=False)
    for _, g in fast.groupby(list(FRONTIER_GROUP), sort=False, dropna=False):
        fast.loc[g.index, "on_frontier"] = _undominated(g["error"].to_numpy(dtype=float),
                                                        g["speedup"].to_numpy(dtype=float))
    return fast[FRONTIER_COLUMNS].reset_index(drop=True).astype({"on_frontier": bool})


def _no_points() -> pd.DataFrame:
    return pd.DataFrame(columns=FRONTIER_COLUMNS).astype({"on_frontier": bool})


def _undominated(error: np.ndarray, speedup: np.ndarray) -> np.ndarray:
    """Which points no other point dominates (error <= and speed-up >=, one strictly)."""
    le = error[None, :] <= error[:, None]        # [i, j]: j's error at most i's
    ge = speedup[None, :] >= speedup[:, None]
    strict = (error[None, :] < error[:, None]) | (speedup[None, :] > speedup[:, None])
    return ~(le & ge & strict).any(axis=1)


def frontier_group_text(group: dict) -> str:
    """A `FRONTIER_GROUP` in words: "3x3, stride 1" (then the dtype, direction and device
    when they are not float32, forward and the CPU)."""
    parts = [f"{group['r']}x{group['s']}"]
    sh, sw = group["sh"], group["sw"]
    parts.append(f"stride {sh}" if sh == sw else f"stride {sh}x{sw}")
    if group["dtype"] != "float32":
        parts.append(group["dtype"])
    if group["direction"] not in ("fwd", None) and not pd.isna(group["direction"]):
        parts.append(DIRECTION_WORDS[group["direction"]])
    if group["device"] not in ("cpu", None) and not pd.isna(group["device"]):
        parts.append(f"on {group['device']}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Against NNPACK's published table

NNPACK_COLUMNS = ["layer", "table_name", "problem", "n", "winner", "family",
                  "published_winner", "published_family", "published_ms", "counterpart",
                  "agree", "tied"]


def nnpack_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """Per layer of NNPACK's README table that the run measured (a forward problem named as in
    the ``nnpack-table`` preset, `convbench.published.NNPACK`), convbench's winner on the CPU
    against NNPACK's published one, compared by family (`convbench.published.NNPACK_FAMILIES`:
    gemm, fft, winograd).

    Returns
    -------
    pandas.DataFrame
        One row per such layer, in run order (`NNPACK_COLUMNS`): ``layer`` (the preset's
        name), ``table_name`` (the README's), ``problem``, ``n`` (this run's batch),
        ``winner`` (its `winners` label, "" when no CPU algorithm ranked) and its
        ``family``; ``published_winner`` (NNPACK's fastest algorithm), ``published_family``
        and ``published_ms``; ``counterpart``: whether the winner's family is in NNPACK's
        table (``direct`` is not); ``agree``: the families are equal (NA when nothing
        ranked); ``tied``: they are not, but an algorithm of NNPACK's family is `tied` with
        the winner (the measurement does not decide between the two families).
    """
    if df.empty or "name" not in df:
        return pd.DataFrame(columns=NNPACK_COLUMNS)
    mine = df[df["name"].isin(list(published.NNPACK)) & (df["direction"] == "fwd")]
    if "device" in mine:
        mine = mine[mine["device"] == "cpu"]
    if mine.empty:
        return pd.DataFrame(columns=NNPACK_COLUMNS)
    win = winners(mine).set_index(["problem", "name"])
    families = dict(zip(mine["algorithm"], mine["family"], strict=True))
    nnpack_families = set(published.NNPACK_FAMILIES.values())
    out = []
    for _, row in mine.drop_duplicates(subset=["problem", "name"]).iterrows():
        table_name, ms = published.NNPACK[row["name"]]
        theirs = published.nnpack_winner(row["name"])
        key = (row["problem"], row["name"])
        winner = win.loc[key, "winner"] if key in win.index else ""
        family = families.get(algorithm_of(winner), "") if winner else ""
        same = published.NNPACK_FAMILIES[theirs]
        ties = win.loc[key, "ties"].split(", ") if winner and win.loc[key, "ties"] else []
        out.append({"layer": row["name"], "table_name": table_name, "problem": row["problem"],
                    "n": row["n"], "winner": winner, "family": family,
                    "published_winner": theirs, "published_family": same,
                    "published_ms": float(ms[theirs]),
                    "counterpart": family in nnpack_families if winner else pd.NA,
                    "agree": family == same if winner else pd.NA,
                    "tied": (family != same and any(families.get(algorithm_of(t)) == same
                                                    for t in ties)) if winner else pd.NA})
    return pd.DataFrame(out, columns=NNPACK_COLUMNS)
