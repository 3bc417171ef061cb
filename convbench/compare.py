"""Two runs side by side: what got faster or slower beyond noise, and which answers moved.

DataFrame in, DataFrame out, like `convbench.analysis`; ``convbench compare RUN_A RUN_B``
prints them.  Run A is the reference ("before"), run B the candidate ("after"); a ratio is
always B over A.

A case *changed* when both hold:

- the Mann-Whitney U test on the two runs' per-value times (``values_s``) rejects "same
  distribution" at ``alpha`` (two-sided), and
- the ratio of medians is outside ``[1 / (1 + f), 1 + f]``, with the floor
  ``f = max(noise_a, noise_b, threshold)`` (`analysis.noise`: IQR / median), so that a
  difference smaller than either run's own spread, or than ``threshold``, is not a change.

A rank test on few values has no power: with ``n_a`` and ``n_b`` values the smallest
two-sided p-value it can give is ``2 / C(n_a + n_b, n_a)`` (0.1 for 3 against 3, 0.029 for
4 against 4).  ``p_value`` is NaN with fewer than 3 values on a side, and wherever the test
cannot reach ``alpha`` (``test == "ratio"``) the ratio rule alone decides.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from . import analysis

ALPHA = 0.05
THRESHOLD = 0.02  # changes under 2 % are not worth a line, even when significant
MIN_VALUES = 3

COMPARE_COLUMNS = ["problem", "name", "algorithm", "device", "operator", "median_a",
                   "median_b", "ratio", "floor", "p_value", "test", "n_a", "n_b", "changed",
                   "direction"]
MOVED_WINNER_COLUMNS = ["problem", "name", "winner_a", "winner_b", "median_a", "median_b",
                        "within_noise"]
MOVED_CROSSOVER_COLUMNS = ["axis", "axis_label", "context", "algorithms", "change", "a", "b"]
STATUS_COLUMNS = ["problem", "name", "algorithm", "device", "status_a", "status_b",
                  "accurate_a", "accurate_b", "reason_b", "regression"]
_KEY = ["problem", "name", "algorithm", "device"]


def _values(v) -> np.ndarray:
    if v is None or (np.isscalar(v) and pd.isna(v)):
        return np.empty(0)
    return np.asarray(v, dtype=float).ravel()


def _min_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value of the exact U test with these sample sizes."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def compare(df_a: pd.DataFrame, df_b: pd.DataFrame, threshold: float = THRESHOLD,
            alpha: float = ALPHA) -> pd.DataFrame:
    """Case-by-case ratios of two runs, with the cases that changed beyond noise.

    Parameters
    ----------
    df_a, df_b : pandas.DataFrame
        Rows of the reference run and of the candidate run.
    threshold : float
        The smallest relative change that counts (0.02 = 2 %), whatever the noise.
    alpha : float
        Significance level of the rank test.

    Returns
    -------
    pandas.DataFrame
        One row per (problem, name, algorithm, device) ``ok`` in both runs and not timed on
        the CUDA simulator, in A's order:
        ``median_a, median_b``, ``ratio`` (B / A), ``floor`` (the relative change a case
        must exceed), ``p_value`` (two-sided Mann-Whitney U on ``values_s``; NaN with fewer
        than 3 values on a side), ``test`` (``"rank"`` when the test can reach ``alpha``
        with these sample sizes, else ``"ratio"``: the ratio rule alone decides), ``n_a,
        n_b`` (values per side), ``changed`` and ``direction`` (``"faster"``, ``"slower"``
        or ``"same"``).
    """
    cols = [*_KEY, "operator", "median_s", "q1_s", "q3_s", "values_s"]
    a, b = (_ok(df)[cols] for df in (df_a, df_b))
    both = a.merge(b, on=_KEY, suffixes=("_a", "_b"))
    out = []
    for _, row in both.iterrows():
        ra = {c: row[f"{c}_a"] for c in ("median_s", "q1_s", "q3_s")}
        rb = {c: row[f"{c}_b"] for c in ("median_s", "q1_s", "q3_s")}
        ta, tb = float(ra["median_s"]), float(rb["median_s"])
        va, vb = _values(row["values_s_a"]), _values(row["values_s_b"])
        floor = max(analysis.noise(ra), analysis.noise(rb), threshold)
        ratio = tb / ta if ta > 0 else math.nan
        beyond = abs(math.log(ratio)) > math.log1p(floor) if ratio > 0 else False
        p = math.nan
        if min(len(va), len(vb)) >= MIN_VALUES:
            p = float(stats.mannwhitneyu(va, vb, alternative="two-sided").pvalue)
        powered = not math.isnan(p) and _min_p(len(va), len(vb)) < alpha
        changed = bool(beyond and (p < alpha if powered else True))
        out.append({
            **{k: row[k] for k in _KEY}, "operator": row["operator_a"],
            "median_a": ta, "median_b": tb, "ratio": ratio, "floor": floor, "p_value": p,
            "test": "rank" if powered else "ratio", "n_a": len(va), "n_b": len(vb),
            "changed": changed,
            "direction": ("slower" if ratio > 1 else "faster") if changed else "same",
        })
    return pd.DataFrame(out, columns=COMPARE_COLUMNS).astype(
        {"changed": bool, "n_a": int, "n_b": int, **dict.fromkeys(
            ("median_a", "median_b", "ratio", "floor", "p_value"), float)})


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=[*_KEY, "operator", "median_s", "q1_s", "q3_s", "values_s"])
    ok = df[(df["status"] == "ok") & df["median_s"].notna() & ~analysis.simulated(df)]
    return ok.drop_duplicates(subset=_KEY)


def moved_winners(df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.DataFrame:
    """Problems (in both runs) whose winner differs.

    Returns
    -------
    pandas.DataFrame
        ``problem, name, winner_a, winner_b``, each winner's time in its own run
        (``median_a, median_b``), and ``within_noise``: the two winners are tied in either
        run (one is among the other's ``ties``), so the move may be noise.
    """
    wa, wb = analysis.winners(df_a), analysis.winners(df_b)
    both = wa.merge(wb, on=["problem", "name"], suffixes=("_a", "_b"))
    moved = both[both["winner_a"] != both["winner_b"]]
    out = [{
        "problem": m["problem"], "name": m["name"], "winner_a": m["winner_a"],
        "winner_b": m["winner_b"], "median_a": m["median_s_a"], "median_b": m["median_s_b"],
        "within_noise": (m["winner_b"] in _split(m["ties_a"])
                         or m["winner_a"] in _split(m["ties_b"])),
    } for _, m in moved.iterrows()]
    return pd.DataFrame(out, columns=MOVED_WINNER_COLUMNS)


def _split(ties: str) -> list[str]:
    return [t.strip() for t in str(ties or "").split(",") if t.strip()]


def moved_crossovers(df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.DataFrame:
    """Crossovers found in one run only, or in both at different intervals.

    Crossovers are matched by axis, context and pair of algorithms; a pair may cross more
    than once along an axis, so what is compared is the list of its ``(lo, hi, before,
    after)`` crossings.  Only pairs both runs measured along that axis and context (see
    `analysis.swept_pairs`) are compared: a sweep one run did not make moves nothing.

    Returns
    -------
    pandas.DataFrame
        One row per (axis, context, pair) that differs: ``axis, axis_label, context``,
        ``algorithms`` ("a, b", sorted), ``change`` (``"only in A"``, ``"only in B"`` or
        ``"moved"``), and ``a``, ``b``: each run's crossings as sentences joined by "; "
        ("" when none).
    """
    found_a, found_b = (_crossings(analysis.crossovers(df)) for df in (df_a, df_b))
    # a crossover can only have moved where both runs measured the pair along that axis
    walked = [{(p.axis, p.context, (p.a, p.b)) for p in analysis.swept_pairs(df).itertuples()}
              for df in (df_a, df_b)]
    out = []
    for key in list(found_a) + [k for k in found_b if k not in found_a]:
        if key not in walked[0] or key not in walked[1]:
            continue
        xa, xb = found_a.get(key), found_b.get(key)
        if xa is not None and xb is not None and xa["points"] == xb["points"]:
            continue
        info = xa or xb
        out.append({
            "axis": key[0], "axis_label": info["axis_label"], "context": key[1],
            "algorithms": ", ".join(key[2]),
            "change": "only in A" if xb is None else "only in B" if xa is None else "moved",
            "a": xa["sentences"] if xa else "", "b": xb["sentences"] if xb else "",
        })
    return pd.DataFrame(out, columns=MOVED_CROSSOVER_COLUMNS)


def _crossings(cx: pd.DataFrame) -> dict:
    found = {}
    for _, c in cx.iterrows():
        key = (c["axis"], c["context"], tuple(sorted((c["before"], c["after"]))))
        entry = found.setdefault(key, {"axis_label": c["axis_label"], "points": [],
                                       "sentences": []})
        entry["points"].append((int(c["lo"]), int(c["hi"]), c["before"], c["after"]))
        entry["sentences"].append(c["sentence"])
    for entry in found.values():
        entry["sentences"] = "; ".join(entry["sentences"])
    return found


def status_changes(df_a: pd.DataFrame, df_b: pd.DataFrame) -> pd.DataFrame:
    """Cases (in both runs) whose status or accuracy differs, e.g. ``ok`` -> ``error``.

    Returns
    -------
    pandas.DataFrame
        ``problem, name, algorithm, device, status_a, status_b, accurate_a, accurate_b,
        reason_b``, and ``regression``: ``ok`` and accurate in A, not in B.
    """
    if df_a.empty or df_b.empty:
        return pd.DataFrame(columns=STATUS_COLUMNS)
    cols = [*_KEY, "status", "accurate", "reason"]
    a, b = (df.drop_duplicates(subset=_KEY)[cols] for df in (df_a, df_b))
    both = a.merge(b, on=_KEY, suffixes=("_a", "_b"))
    good_a = (both["status_a"] == "ok") & both["accurate_a"].fillna(False).astype(bool)
    good_b = (both["status_b"] == "ok") & both["accurate_b"].fillna(False).astype(bool)
    # missing (not judged) is a value of its own here: NA != NA would count as a change
    acc_a, acc_b = (both[c].astype("string").fillna("-") for c in ("accurate_a", "accurate_b"))
    differs = (both["status_a"] != both["status_b"]) | (acc_a != acc_b)
    out = both.assign(regression=good_a & ~good_b)[differs.fillna(True).astype(bool)]
    return out[STATUS_COLUMNS].reset_index(drop=True)


def environment_differences(meta_a: dict, meta_b: dict) -> list[str]:
    """What differs between two runs' ``meta.json`` that can move timings, as
    ``"field: A -> B"`` lines: threads, CPU, core count, host, library versions, BLAS
    library and kernel, environment variables (``OPENBLAS_CORETYPE``...), git commit."""

    def flat(meta: dict) -> dict:
        m = meta.get("machine", {}) or {}
        out = {"threads": meta.get("threads"), "blas_threads": meta.get("blas_threads")}
        out.update({f: m.get(f) for f in ("cpu_model", "cpu_name", "cores", "hostname",
                                          "git_commit")})
        out.update({f"version {k}": v for k, v in (m.get("versions") or {}).items()})
        out.update({f"env {k}": v for k, v in (m.get("env") or {}).items()})
        out["blas"] = ", ".join(sorted(f"{b.get('prefix', b.get('internal_api'))} "
                                       f"{b.get('version')} ({b.get('architecture')})"
                                       for b in m.get("blas") or []))
        return out

    fa, fb = flat(meta_a), flat(meta_b)
    return [f"{k}: {fa.get(k)} -> {fb.get(k)}" for k in dict.fromkeys([*fa, *fb])
            if fa.get(k) != fb.get(k)]
