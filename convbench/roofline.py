"""The roofline of this machine, measured once and cached, and where each row sits under it.

A roofline (Williams, Waterman & Patterson 2009) bounds a kernel's rate by
``min(peak, intensity x bandwidth)``: ``peak`` is the fastest the cores compute (FLOP/s),
``bandwidth`` the fastest the memory level holding the data delivers bytes, and
``intensity`` the kernel's FLOPs per byte moved.  convbench measures both ceilings itself,
the way its kernels run, so that "fraction of peak" means fraction of what *this* code can
reach on *this* machine:

- **peak GEMM** (`measure_peak`): one single-threaded BLAS GEMM per Numba thread, all at
  once inside a ``prange`` (how `convbench_kernels.cpu.common.single_threaded_blas` has the kernels
  call BLAS), square sizes `GEMM_SIZES`, best of `REPEATS`, for float32 and float64;
- **bandwidth** (`measure_bandwidth`): a STREAM triad ``a[i] = b[i] + s * c[i]`` in a Numba
  ``prange`` at three working-set sizes, one per level (`LEVELS`): L2 (each thread's share
  in its core's L2), L3 and DRAM (well beyond the L3), best of `REPEATS`.

Both run at the run's Numba thread count, in about a second, and the result is cached per
machine (`load_or_measure`, `convbench.cache`): a JSON file keyed by everything that would
change the numbers (`cache_key`), unless other work kept the cores busy while it was measured.

The per-row model (`operator_flops`, `compulsory_bytes`, `intermediate_bytes`, `bytes_moved`,
`memory_level`, `row_columns`) is written once below with its reasons.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from . import cache, machine, registry

__all__ = ["LEVELS", "Roofline", "cache_key", "cache_path", "load_or_measure",
           "measure", "measure_peak", "measure_bandwidth", "triad", "operator_flops",
           "compulsory_bytes", "intermediate_bytes", "bytes_moved", "footprint",
           "memory_level", "row_columns", "summary", "sentences", "ROW_COLUMNS"]

# The memory levels a working set can live in, nearest first.  L1 is left out: no layer's
# data fits in 48 KiB, and a triad that small measures loop overhead more than bandwidth.
LEVELS = ("L2", "L3", "DRAM")
# Square GEMM sizes tried for the peak, smallest first; the best rate is kept.  On 2 Zen 5
# cores with OpenBLAS (Haswell or SkylakeX kernel) the rate stops growing by 1024: 512 is a
# few percent short and 2048 adds nothing but a quarter of a second per dtype.
GEMM_SIZES = (512, 1024)
REPEATS = 5
# Bytes the triad moves per timed call at least (repeating the sweep over a small working
# set inside one parallel region), so that one timing is a few milliseconds, far above the
# timer's resolution and the fork-join cost of a prange.
TRIAD_BYTES = 1 << 30
# Fixed cache sizes when the OS does not say (Zen 5: 1 MiB L2 per core, 32 MiB L3 per CCD).
FALLBACK_L2 = 1 << 20
FALLBACK_L3 = 32 << 20
# The DRAM triad's working set: this many times the L3, and at least `DRAM_MIN_BYTES`, so that
# what the last level cache still holds is noise.
DRAM_FACTOR = 8
DRAM_MIN_BYTES = 256 << 20
FORMAT = 1  # version of the cache file's layout


@dataclass(frozen=True)
class Roofline:
    """The measured ceilings of one machine at one thread count.

    Attributes
    ----------
    peak_gflops : dict
        dtype name -> GEMM GFLOP/s of all threads together.
    bandwidth_gbs : dict
        level (`LEVELS`) -> triad GB/s (1e9 bytes/s) of all threads together, counted as
        STREAM counts: 3 arrays x itemsize per element (two reads, one write; the extra
        read a cache does to own the written line is not counted).
    capacity_bytes : dict
        level -> bytes of data that fit in it (L2: per-core L2 x threads, each thread's share
        in its own core's L2; L3: the L3 of one instance; DRAM: None, unbounded).
    threads : int
    key : dict
        What the numbers depend on (`cache_key`).
    details : dict
        How they were measured: GEMM rate per size, triad working sets, seconds taken.
    """

    peak_gflops: dict
    bandwidth_gbs: dict
    capacity_bytes: dict
    threads: int
    key: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Roofline:
        """A Roofline from `to_dict`'s output; ValueError when a field is missing or wrong."""
        try:
            roof = cls(peak_gflops={str(k): float(v) for k, v in d["peak_gflops"].items()},
                       bandwidth_gbs={str(k): float(v) for k, v in d["bandwidth_gbs"].items()},
                       capacity_bytes={str(k): None if v is None else int(v)
                                       for k, v in d["capacity_bytes"].items()},
                       threads=int(d["threads"]), key=dict(d.get("key") or {}),
                       details=dict(d.get("details") or {}))
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise ValueError(f"roofline: not a roofline record ({err!r})") from None
        if set(roof.bandwidth_gbs) != set(LEVELS) or set(roof.capacity_bytes) != set(LEVELS):
            raise ValueError(f"roofline: levels must be {', '.join(LEVELS)}")
        if not roof.peak_gflops or not all(v > 0 for v in (*roof.peak_gflops.values(),
                                                            *roof.bandwidth_gbs.values())):
            raise ValueError("roofline: peaks and bandwidths must be positive")
        return roof


# ---------------------------------------------------------------------------------------------
# The per-row model: one place, exact formulas, tested in tests/unit/test_roofline.py

def operator_flops(spec, operator: str = "conv") -> int:
    """FLOPs of one call as the roofline counts them.

    ``conv``: the direct method's ``spec.flops`` (``2·n·k·oh·ow·(c/groups)·r·s``), whatever
    the algorithm, so that Winograd and FFT rows sit at their *effective* rate and intensity,
    as the ``gflops`` column does: an effective rate above the peak means the algorithm does
    fewer multiplies than the direct method.  ``separable``: the FLOPs that operator does
    compute, depthwise ``2·n·c·oh·ow·r·s`` plus pointwise ``2·n·k·oh·ow·c`` (as
    `convbench.analysis.separable_savings` counts them): its ``gflops`` column is against the
    standard convolution it replaces, 8-9 times more FLOPs, which would put it far above any
    roof it really meets.
    """
    if operator == "separable":
        return 2 * spec.n * spec.oh * spec.ow * (spec.c * spec.r * spec.s + spec.k * spec.c)
    if operator != "conv":
        raise ValueError(f"operator must be one of conv, separable, got {operator!r}")
    return spec.flops


def compulsory_bytes(spec, operator: str = "conv") -> int:
    """Bytes every algorithm must move: read the input and the weights, write the output,
    once each (``spec.min_bytes``; for ``separable``, its own weights ``c·r·s + k·c``)."""
    if operator == "separable":
        elems = (spec.n * spec.c * spec.h * spec.w + spec.c * spec.r * spec.s + spec.k * spec.c
                 + spec.n * spec.k * spec.oh * spec.ow)
        return elems * spec.itemsize
    if operator != "conv":
        raise ValueError(f"operator must be one of conv, separable, got {operator!r}")
    return spec.min_bytes


def intermediate_bytes(spec, family: str, workspace: int) -> int:
    """Bytes of intermediates one call writes once and reads once, by algorithm family.

    - ``depthwise``: 0.  Its workspace is per-thread scratch (one padded plane, or a padded
      block of 16 channels, and an accumulator; see `convbench_kernels.cpu.depthwise`) refilled
      plane after plane, reused in the core's cache rather than streamed: what it moves through the
      level its data lives in is the compulsory traffic.  (The estimate counts each thread's
      scratch once, so ``2 x workspace`` would be no traffic at all: twice the compulsory
      bytes for 32 channels at 112x112, a fifth of them for 512 at 14x14.)
    - ``separable``: the depthwise stage's output, ``n·c·oh·ow`` elements, which the
      pointwise GEMM reads back (its scratch is the depthwise stage's, as above).
    - every other family: the registry entry's ``workspace(spec)`` estimate, the buffers it
      materialises per call: im2col's column blocks, Winograd's transformed tiles and
      products, the FFT's spectra, direct's padded input.  The estimate is an upper bound on
      what is allocated (tested so in tests/kernels), and part of it is written once per
      layer in prepare (transformed weights): the traffic is overstated, so for these rows
      the intensity is a lower bound and the bandwidth fraction an upper one.
    """
    if family == "depthwise":
        return 0
    if family == "separable":
        return spec.n * spec.c * spec.oh * spec.ow * spec.itemsize
    return int(workspace)


def bytes_moved(spec, intermediates: int, operator: str = "conv") -> int:
    """Bytes one call moves: the compulsory traffic (`compulsory_bytes`) plus
    ``2 x intermediates`` (`intermediate_bytes`: each written once and read once)."""
    return compulsory_bytes(spec, operator) + 2 * int(intermediates)


def footprint(spec, workspace: int, operator: str = "conv") -> int:
    """Bytes a call touches, each counted once: compulsory data plus the workspace.  The
    memory level a row is judged against is the nearest whose capacity holds this."""
    return compulsory_bytes(spec, operator) + int(workspace)


def memory_level(nbytes: int, roof: Roofline) -> str:
    """The nearest level (`LEVELS`) whose ``capacity_bytes`` holds ``nbytes``."""
    for level in LEVELS:
        cap = roof.capacity_bytes.get(level)
        if cap is None or nbytes <= cap:
            return level
    return LEVELS[-1]


ROW_COLUMNS = ("bytes_moved", "intensity", "peak_fraction", "bandwidth_fraction",
               "memory_level")
_NAN_ROW = {"bytes_moved": None, "intensity": math.nan, "peak_fraction": math.nan,
            "bandwidth_fraction": math.nan, "memory_level": None}


def row_columns(spec, row: Mapping, workspace: int | None, roof: Roofline | None) -> dict:
    """The roofline columns of one result row.

    - ``bytes_moved``: `bytes_moved` of the row's family's `intermediate_bytes`;
    - ``intensity``: `operator_flops` / ``bytes_moved`` (FLOP/byte);
    - ``peak_fraction``: the row's rate (`operator_flops` / ``median_s``) over the peak of
      its dtype (for a standard convolution: ``gflops`` / peak);
    - ``memory_level``: `memory_level` of the `footprint`;
    - ``bandwidth_fraction``: ``bytes_moved / median_s`` over that level's bandwidth.

    Missing (NaN, None) for rows that were not timed on this machine's CPU: not ``ok``,
    another device, the CUDA simulator, no roofline, or a dtype the roofline lacks.

    Parameters
    ----------
    spec : ConvSpec
    row : mapping
        The row (``status``, ``device``, ``family``, ``operator``, ``median_s``,
        ``simulated``).
    workspace : int or None
        The registry entry's ``workspace(spec)`` (None: the entry gives no estimate: 0):
        all of it counts in the `footprint`, and what `intermediate_bytes` says in the
        traffic.
    roof : Roofline or None
    """
    median = row.get("median_s")
    if (roof is None or row.get("status") != "ok" or row.get("device") != "cpu"
            or row.get("simulated") or median is None or not median > 0
            or spec.dtype not in roof.peak_gflops):
        return dict(_NAN_ROW)
    operator = row.get("operator") or "conv"
    ws = int(workspace or 0)
    moved = bytes_moved(spec, intermediate_bytes(spec, row.get("family") or "", ws), operator)
    flops = operator_flops(spec, operator)
    level = memory_level(footprint(spec, ws, operator), roof)
    return {
        "bytes_moved": moved,
        "intensity": flops / moved,
        "peak_fraction": flops / median / 1e9 / roof.peak_gflops[spec.dtype],
        "bandwidth_fraction": moved / median / 1e9 / roof.bandwidth_gbs[level],
        "memory_level": level,
    }


def summary(roof: Mapping | Roofline | None) -> str:
    """One sentence with the measured ceilings (empty without a roofline)."""
    if roof is None:
        return ""
    r = roof if isinstance(roof, Roofline) else Roofline.from_dict(roof)
    peaks = ", ".join(f"{v:.0f} GFLOP/s {k}" for k, v in sorted(r.peak_gflops.items()))
    bws = ", ".join(f"{level} {r.bandwidth_gbs[level]:.0f}" for level in LEVELS)
    blas = r.key.get("blas") or []
    lib = "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}"
                    for b in blas if b.get("internal_api")) or "BLAS"
    how = ("from the cache" if r.details.get("cached") else "measured at the start of the run")
    busy = r.details.get("busy")
    note = (f" Measured on a busy machine ({busy}): the ceilings read low and were not "
            "cached." if busy else "")
    return (f"Machine ceilings at {r.threads} thread{'s' if r.threads != 1 else ''} ({how}): "
            f"peak GEMM {peaks} (single-threaded {lib} GEMMs, one per thread); triad bandwidth "
            f"{bws} GB/s (STREAM counting: 3 arrays per element).{note}")


# ---------------------------------------------------------------------------------------------
# Measuring

@njit(parallel=True, cache=True)
def _gemm_each_thread(a, b, c):
    """``c[t] = a[t] @ b[t]`` for every t at once: one BLAS GEMM per Numba thread."""
    for t in prange(a.shape[0]):
        np.dot(a[t], b[t], c[t])


@njit(parallel=True, cache=True)
def triad(a, b, c, s, reps, chunks):
    """STREAM triad ``a[i] = b[i] + s * c[i]``, ``reps`` times over the arrays.

    The arrays are split into ``chunks`` contiguous pieces, one per ``prange`` iteration, and
    each piece is swept ``reps`` times inside its iteration: a thread keeps its piece (in its
    own core's L2 when small) and the fork-join of the parallel region is paid once, not per
    sweep.  The scalar changes per sweep so no sweep can be skipped as a repeat of the last;
    ``a`` ends as ``b + (s + reps - 1) * c``.

    Each piece is a slice, indexed from 0: LLVM then vectorizes the sweep.  Indexing the whole
    arrays from ``lo`` to ``hi`` instead ran at a fifth of the speed in L2 and half from DRAM
    (2 Zen 5 cores: 61 against 500 GB/s at 1 MiB, 25 against 97 GB/s at 256 MiB).
    """
    n = a.shape[0]
    for ch in prange(chunks):
        lo = ch * n // chunks
        hi = (ch + 1) * n // chunks
        aa, bb, cc = a[lo:hi], b[lo:hi], c[lo:hi]
        for rep in range(reps):
            q = s + rep
            for i in range(aa.shape[0]):
                aa[i] = bb[i] + q * cc[i]


def _best(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_peak(threads: int, sizes=GEMM_SIZES, dtypes=("float32", "float64"),
                 repeats: int = REPEATS) -> tuple[dict, dict]:
    """Peak GEMM GFLOP/s per dtype: ``threads`` concurrent single-threaded GEMMs.

    Returns ``(peaks, rates)``: the best rate per dtype, and the rate per dtype and size.
    The caller fixes Numba's thread count; BLAS is limited to one thread here.
    """
    from convbench_kernels.cpu.common import single_threaded_blas

    peaks, rates = {}, {}
    with single_threaded_blas():
        for dtype in dtypes:
            rates[dtype] = {}
            for n in sizes:
                rng = np.random.default_rng(n)
                a = rng.standard_normal((threads, n, n)).astype(dtype)
                b = rng.standard_normal((threads, n, n)).astype(dtype)
                c = np.empty_like(a)
                _gemm_each_thread(a, b, c)  # compiles (once per dtype), warms the caches
                t = _best(lambda a=a, b=b, c=c: _gemm_each_thread(a, b, c), repeats)
                rates[dtype][str(n)] = 2 * n**3 * threads / t / 1e9
            peaks[dtype] = max(rates[dtype].values())
    return peaks, rates


def triad_sizes(l2: int, l3: int, threads: int) -> dict:
    """Working-set bytes (all three arrays) of the triad at each level: half of the
    threads' L2s together, half of the L3, and `DRAM_FACTOR` L3s (at least `DRAM_MIN_BYTES`).
    Half, so that the code, the stack and the other arrays' lines fit beside it."""
    return {"L2": threads * l2 // 2, "L3": l3 // 2, "DRAM": max(DRAM_FACTOR * l3, DRAM_MIN_BYTES)}


def measure_bandwidth(threads: int, sizes: Mapping, repeats: int = REPEATS) -> dict:
    """Triad GB/s per level, for working sets of ``sizes[level]`` bytes.

    DRAM bandwidth is the least stable ceiling on a shared host: on a 2-core VM the DRAM
    triad read 46, 55 and 95 GB/s in processes minutes apart (each stable within itself),
    while L2 and L3 moved by 10 %.  A cached value is one such snapshot; ``remeasure``
    (`load_or_measure`) takes another.
    """
    out = {}
    for level, nbytes in sizes.items():
        n = max(int(nbytes) // (3 * 8), threads * 8)
        a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)  # every page touched once here
        reps = max(1, TRIAD_BYTES // (3 * 8 * n))
        triad(a, b, c, 3.0, 1, threads)  # compiles once, warms
        t = _best(lambda a=a, b=b, c=c, reps=reps: triad(a, b, c, 3.0, reps, threads), repeats)
        out[level] = 3 * 8 * n * reps / t / 1e9
    return out


def measure(threads: int | None = None) -> Roofline:
    """Measure this machine's roofline at ``threads`` Numba threads (default: the current
    count), about a second (plus compiling the two kernels on a machine's first run)."""
    threads = threads or numba.get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        target = registry.cpu_target()  # its caches are this machine's (sysfs)
        l2, l3 = target.l2_bytes, target.l3_bytes
        l2, l3 = l2 or FALLBACK_L2, l3 or FALLBACK_L3
        peaks, rates = measure_peak(threads)
        sizes = triad_sizes(l2, l3, threads)
        bandwidth = measure_bandwidth(threads, sizes)
        seconds = time.perf_counter() - t0
    finally:
        numba.set_num_threads(previous)
    return Roofline(
        peak_gflops=peaks, bandwidth_gbs=bandwidth,
        capacity_bytes={"L2": threads * l2, "L3": l3, "DRAM": None}, threads=threads,
        key=cache_key(threads),
        details={"gemm_gflops_by_size": rates, "triad_bytes": sizes, "l2_per_core": l2,
                 "l3": l3, "seconds": round(seconds, 3),
                 "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


# ---------------------------------------------------------------------------------------------
# The cache

def cache_key(threads: int) -> dict:
    """The machine key (`convbench.cache.machine_key`: CPU, target, cores, threads, every
    BLAS library's version and kernel, Numba, llvmlite, convbench) and this file's format."""
    return {**cache.machine_key(threads), "format": FORMAT}


def cache_path(key: Mapping) -> Path:
    return cache.path("roofline", key)


def _read(path: Path, key: Mapping) -> Roofline | None:
    """The cached roofline at ``path`` if it is valid and was measured under ``key``."""
    try:
        roof = Roofline.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError):  # missing, unreadable, corrupt: measure again
        return None
    return roof if roof.key == dict(key) else None


def load_or_measure(threads: int, remeasure: bool = False) -> tuple[Roofline, bool]:
    """The roofline at ``threads``: from the cache when an entry matches `cache_key`, else
    measured (`measure`) and stored.  A corrupt or mismatched entry is measured over.

    A measurement taken while other work kept the cores busy (`convbench.machine.busy_reason`)
    reads low ceilings, and every later fraction of them would be wrong: it is used for the
    run that measured it, with ``details["busy"]`` saying why, and never cached.

    Returns ``(roofline, cached)``; ``roofline.details["cached"]`` says the same.
    """
    key = cache_key(threads)
    path = cache_path(key)
    roof = None if remeasure else _read(path, key)
    cached = roof is not None
    if roof is None:
        with machine.OtherLoad() as load:
            roof = measure(threads)
        busy = machine.busy_reason(load)
        roof = Roofline(**{**roof.to_dict(), "key": key})
        roof.details.update(busy=busy, other_cores=load.cores)
        if busy is None:
            cache.write(path, roof.to_dict())
    roof.details.update(cached=cached, cache_file=str(path))
    return roof, cached


# ---------------------------------------------------------------------------------------------
# In words, for the report

# A family whose median row runs below this fraction of its roofline bound is far from its
# limit: a better kernel could move the crossovers it is part of.
FAR_FROM_LIMIT = 0.5


def bound_fraction(df):
    """Each row's rate as a fraction of its roofline bound, ``min(peak, intensity x
    bandwidth)``: ``max(peak_fraction, bandwidth_fraction)`` (a compute-bound row is judged
    by the peak, a memory-bound one by the bandwidth of the level its data fits in)."""
    return df[["peak_fraction", "bandwidth_fraction"]].astype(float).max(axis=1)


def far_from_limit(df) -> list[str]:
    """A sentence per family (CPU rows ``ok`` and accurate, baselines and the separable
    operator excepted) whose median `bound_fraction` is below `FAR_FROM_LIMIT`."""
    if df is None or df.empty or "peak_fraction" not in df:
        return []
    rows = df[(df["status"] == "ok") & df["accurate"].fillna(False).astype(bool)
              & (df["device"] == "cpu") & (df["family"] != "baseline")
              & (df["operator"] == "conv") & df["peak_fraction"].notna()]
    out = []
    for family, g in rows.groupby("family", sort=True):
        frac = bound_fraction(g)
        if frac.median() < FAR_FROM_LIMIT:
            out.append(f"{family} runs at a median {100 * frac.median():.0f}% of its roofline "
                       f"bound (the machine's peak, or the bandwidth of the memory level its "
                       f"data fits in) over its {len(g)} measured row{'s' if len(g) != 1 else ''}"
                       f", under the {100 * FAR_FROM_LIMIT:.0f}% this report calls near its "
                       "limit: the crossovers it is part of may move with a better kernel.")
    return out

def sentences(df, roof) -> list[str]:
    """The report's findings about the roofline: the measured ceilings (`summary`), and how
    much of its level's bandwidth each depthwise row uses (depthwise convolution does ``r·s``
    multiply-adds per output against at least one input read and one output written: under
    ``2·r·s / (2·itemsize)`` FLOP per byte, 2.25 for 3x3 in float32, far left of any ridge
    point, so bandwidth, not the peak, is the ceiling it is judged by).  Empty without a
    valid roofline."""
    if not roof:
        return []
    try:
        r = roof if isinstance(roof, Roofline) else Roofline.from_dict(roof)
    except ValueError:
        return []
    out = [summary(r)]
    if df is None or df.empty or "bandwidth_fraction" not in df:
        return out
    dw = df[(df["status"] == "ok") & (df["family"] == "depthwise")
            & df["bandwidth_fraction"].notna()]
    if len(dw):
        frac = dw["bandwidth_fraction"].astype(float)
        counts = dw["memory_level"].astype(str).value_counts()
        levels = ", ".join(f"{counts[lvl]} in {lvl}" for lvl in LEVELS if lvl in counts)
        span = (f"{100 * frac.min():.0f}%" if math.isclose(frac.min(), frac.max(), rel_tol=0.05)
                else f"{100 * frac.min():.0f}-{100 * frac.max():.0f}% (median "
                     f"{100 * frac.median():.0f}%)")
        out.append(f"Depthwise, judged by bandwidth: its {len(dw)} measured "
                   f"row{'s' if len(dw) != 1 else ''} ({levels}) move data at {span} of the "
                   "measured bandwidth of the level their data fits in, at "
                   f"{dw['intensity'].astype(float).median():.2g} FLOP/byte (median).")
    return out
