"""Answers from rows: DataFrame in, DataFrame out.  Runs nothing."""

from __future__ import annotations

import pandas as pd


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that can win: ``ok``, accurate, and computing the standard convolution (the
    separable operator computes a different function, so it is compared, not ranked)."""
    if df.empty or "median_s" not in df:
        return df.iloc[0:0]
    mask = (df["status"] == "ok") & df["accurate"].fillna(False).astype(bool) & (
        df["operator"] == "conv")
    return df[mask]


def winners(df: pd.DataFrame) -> pd.DataFrame:
    """The fastest ranked row of each problem (by median time)."""
    r = ranked(df)
    if r.empty:
        return r
    idx = r.groupby(["problem", "name"], sort=False)["median_s"].idxmin()
    return r.loc[idx]


def winners_table(df: pd.DataFrame) -> pd.DataFrame:
    """A short table: per problem, the winner, its time and GFLOP/s, and the runner-up."""
    r = ranked(df)
    if r.empty:
        return pd.DataFrame()
    out = []
    for (problem, name), g in r.groupby(["problem", "name"], sort=False):
        g = g.sort_values("median_s")
        best = g.iloc[0]
        second = g.iloc[1] if len(g) > 1 else None
        out.append({
            "problem": name or problem,
            "winner": best["algorithm"],
            "ms": round(best["median_s"] * 1e3, 3),
            "GFLOP/s": round(best["gflops"], 1),
            "runner-up": second["algorithm"] if second is not None else "",
            "x slower": round(second["median_s"] / best["median_s"], 2) if second is not None
            else float("nan"),
        })
    return pd.DataFrame(out)
