"""Where a call's time goes: the phases of the algorithms that have them.  Runs nothing.

A row's ``phases_s`` holds ``{phase: seconds}``, each phase timed alone (the runner times
``compute.phases``, see `convbench_kernels.contract`).  Phase names are one vocabulary:
``multiply`` does the products (GEMMs, direct loops, per-frequency sums); every other phase
moves or transforms data (``pad``, ``pack``, ``input transform``, ``output transform``), so a
row's *transform share* is the time of its other phases over the time of all of them.

FFT and Winograd trade multiplies for transforms, so whether one overtakes another along a
sweep can be the multiply's doing or the transforms'.  `deciders` tells which, crossover by
crossover: if the multiply alone favours the same algorithm on both sides of a crossover, the
transforms moved it.
"""

from __future__ import annotations

import json

import pandas as pd

from . import analysis

MULTIPLY = "multiply"
# the separable operator's two stages both compute: neither is a transform
COMPUTE = (MULTIPLY, "depthwise", "pointwise")

PHASE_COLUMNS = ["problem", "name", "label", "algorithm", "device", "operator",
                 *analysis.PROBLEM_FIELDS, "median_s", "phase", "order", "seconds", "share"]
DECIDER_COLUMNS = ["sentence", "axis", "lo", "hi", "before", "after", "multiply_ratio_lo",
                   "multiply_ratio_hi", "transform_share_lo", "transform_share_hi",
                   "decided_by"]


def _parse(text) -> dict[str, float]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def phase_times(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (measured row, phase), in the kernel's phase order (`PHASE_COLUMNS`):
    ``seconds`` of the phase alone and its ``share`` of the phases' sum.  Only rows ``ok``,
    accurate and timed on real hardware (not the CUDA simulator), and with phases."""
    if df.empty or "phases_s" not in df:
        return pd.DataFrame(columns=PHASE_COLUMNS)
    ok = df[(df["status"] == "ok") & df["accurate"].fillna(False).astype(bool)
            & df["median_s"].notna() & ~analysis.simulated(df)]
    out = []
    for _, row in ok.iterrows():
        phases = _parse(row["phases_s"])
        total = sum(phases.values())
        if not phases or not total > 0:
            continue
        base = {f: row[f] for f in ("problem", "name", "algorithm", "device", "operator",
                                    *analysis.PROBLEM_FIELDS, "median_s")}
        base["label"] = analysis.label(row["algorithm"], row["device"])
        for i, (phase, seconds) in enumerate(phases.items()):
            out.append({**base, "phase": phase, "order": i, "seconds": seconds,
                        "share": seconds / total})
    return pd.DataFrame(out, columns=PHASE_COLUMNS)


def transform_share(df: pd.DataFrame) -> pd.DataFrame:
    """Per measured row with phases: ``problem, name, label`` and ``multiply_s`` (its
    multiply phase), ``transform_s`` (the others), ``transform_share`` (of their sum)."""
    t = phase_times(df)
    cols = ["problem", "name", "label", "multiply_s", "transform_s", "transform_share"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    t = t.assign(part=t["phase"].isin(COMPUTE).map({True: "multiply_s", False: "transform_s"}))
    out = (t.groupby(["problem", "name", "label", "part"], sort=False)["seconds"].sum()
           .unstack("part", fill_value=0.0).reset_index())
    for col in ("multiply_s", "transform_s"):
        if col not in out:
            out[col] = 0.0
    out["transform_share"] = out["transform_s"] / (out["multiply_s"] + out["transform_s"])
    return out[cols]


def deciders(df: pd.DataFrame, xo: pd.DataFrame) -> pd.DataFrame:
    """For each crossover (`convbench.analysis.crossovers`) in which at least one of the two
    algorithms has phases: whether the multiply or the transforms decide it.

    An algorithm's *multiply time* is its ``multiply`` phase, or its whole median when it has
    no phases (direct loops with no padding, fused im2col: all of it is the multiply).  With
    ``multiply_ratio`` = the multiply time of ``after`` over that of ``before``:

    - below 1 on both sides (the multiply alone always favours ``after``) or above 1 on both
      (always ``before``): the transforms decide where the winner changes
      (``decided_by = "transforms"``);
    - from above 1 to below 1 (the multiply alone crosses over too): ``"multiply"``;
    - from below 1 to above 1: the transforms outweigh a multiply that crosses the other way
      (``"transforms"``).

    ``transform_share_lo`` / ``_hi`` are the phased algorithm's (``after``'s, else
    ``before``'s) transform share at each side.  Columns: `DECIDER_COLUMNS`.
    """
    if xo.empty:
        return pd.DataFrame(columns=DECIDER_COLUMNS)
    r = analysis.ranked(df)
    r = r.assign(label=[analysis.label(a, d) for a, d in zip(r["algorithm"], r["device"],
                                                              strict=True)])
    split = {(p, lab): (m, share) for p, lab, m, share in transform_share(df)[
        ["problem", "label", "multiply_s", "transform_share"]].itertuples(index=False)}
    out = []
    for _, x in xo.iterrows():
        pair = (x["before"], x["after"])
        sides = [_point(r, x, x[end], pair) for end in ("lo", "hi")]
        if any(len(side) != 2 for side in sides):
            continue
        phased = [lab for lab in pair[::-1]
                  if all((side[lab]["problem"], lab) in split for side in sides)]
        if not phased:
            continue

        def multiply(side, lab):
            key = (side[lab]["problem"], lab)
            return split[key][0] if key in split else float(side[lab]["median_s"])

        m = [multiply(side, x["after"]) / multiply(side, x["before"]) for side in sides]
        share = [split[(side[phased[0]]["problem"], phased[0])][1] for side in sides]
        decided = "multiply" if m[0] >= 1 > m[1] else "transforms"
        out.append({"axis": x["axis"], "lo": x["lo"], "hi": x["hi"], "before": x["before"],
                    "after": x["after"], "multiply_ratio_lo": m[0], "multiply_ratio_hi": m[1],
                    "transform_share_lo": share[0], "transform_share_hi": share[1],
                    "decided_by": decided,
                    "sentence": _sentence(x, m, share, phased[0], decided)})
    return pd.DataFrame(out, columns=DECIDER_COLUMNS)


def _point(r: pd.DataFrame, x: pd.Series, value, labels) -> dict[str, pd.Series]:
    """``{label: row}`` of ``labels``' ranked rows at axis ``value`` of crossover ``x``'s
    context (every identity field it fixes); a label measured twice there is left out."""
    axis = x["axis"]
    partner = analysis.AXES[axis][1]
    mask = (r[axis] == value) & r["label"].isin(labels)
    if partner is not None:
        mask &= r[partner] == value
    for f in analysis.IDENTITY:
        if f not in (axis, partner) and f in x.index:
            mask &= r[f].astype(str) == str(x[f])
    rows = r[mask].drop_duplicates(subset=["problem", "label"])
    return {lab: g.iloc[0] for lab, g in rows.groupby("label") if len(g) == 1}


def _sentence(x, m, share, phased, decided) -> str:
    head = (f"{x['after']} overtakes {x['before']} between {x['axis_label']} {x['lo']} and "
            f"{x['hi']} at {x['context']}")
    pct = " and ".join(f"{100 * s:.0f}%" for s in share)
    if decided == "multiply":
        return (f"{head}: the multiply alone crosses over there too ({x['after']}'s over "
                f"{x['before']}'s: {m[0]:.2f} then {m[1]:.2f}); {phased}'s transforms "
                f"({pct} of its time) do not move it.")
    favoured = x["after"] if m[0] < 1 else x["before"]
    return (f"{head}: the multiply alone favours {favoured} on both sides ({x['after']}'s "
            f"over {x['before']}'s: {m[0]:.2f} and {m[1]:.2f}), so the transforms decide "
            f"where ({phased}'s take {pct} of its time).")
