"""Numerical error of a result against the float64 reference, and whether it is acceptable."""

from __future__ import annotations

import numpy as np


def errors(out: np.ndarray, ref: np.ndarray) -> dict:
    """Error metrics of ``out`` against ``ref`` (float64).

    Returns
    -------
    dict
        ``max_abs_err``: max |out - ref|; ``max_rel_err``: that over max |ref|;
        ``rel_l2_err``: ||out - ref||_2 / ||ref||_2; ``finite``: every element finite;
        ``nonzero``: fraction of non-zero outputs.
    """
    out64 = np.asarray(out, dtype=np.float64)
    finite = bool(np.isfinite(out64).all())
    diff = out64 - ref
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    norm = float(np.linalg.norm(ref))
    max_abs = float(np.abs(diff).max()) if finite else float("inf")
    return {
        "max_abs_err": max_abs,
        "max_rel_err": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
        "rel_l2_err": (float(np.linalg.norm(diff)) / norm if norm > 0 else
                       (0.0 if max_abs == 0 else float("inf"))) if finite else float("inf"),
        "finite": finite,
        "nonzero": float(np.count_nonzero(out64)) / max(out64.size, 1),
    }


def judge(err: dict, tolerance: float, ref: np.ndarray) -> tuple[bool, str]:
    """``(accurate, why)``: within ``tolerance`` (on ``max_rel_err``) and trustworthy.

    A result that is not finite, or all zeros where the reference is not, is never accurate
    (benchdnn "mistrusts" such results rather than passing them).
    """
    if not err["finite"]:
        return False, "output holds NaN or infinity"
    if err["nonzero"] == 0 and np.any(ref):
        return False, "output is all zeros"
    if err["max_rel_err"] > tolerance:
        return False, f"max_rel_err {err['max_rel_err']:.3g} > tolerance {tolerance:.3g}"
    return True, ""
