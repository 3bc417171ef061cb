"""Side-by-side speed of every CPU algorithm and PyTorch's conv2d (oneDNN), in one process.

Layers come from the presets (`--layers` names a selection: the eight ResNet-50 layers of the
headline table by default; `--preset NAME --match REGEX` takes any preset's layers).  Every
contender, PyTorch included, is a registry entry and is timed the way a sweep times it, with
`convbench.timing.measure`:

- ``call``: ``convbench.conv2d(x, w, ..., algo=name)``, as a user calls it (filter transforms,
  allocation, PyTorch's copy of its result into the output array included); with ``--dir
  bwd_d`` or ``bwd_w`` the gradient's call (``conv2d_input`` / ``conv2d_weight``: prepare and
  compute, as `convbench.api.run` makes them), against PyTorch's ``convolution_backward``;
- ``compute``: the prepared step alone, ``compute(x, out)`` (what a sweep's ``median_s`` is).

Contenders run in interleaved rounds (each in turn, again and again) and each keeps its best
round's median: a burst of load from elsewhere on the machine costs a round, not the
comparison.  Batch 1, float32 unless the layers say otherwise, the same thread count for Numba
and PyTorch, BLAS on one thread inside Numba's (as in a sweep).  Each row gives GFLOP/s
(direct-method FLOPs over the call) and that rate as a fraction of the machine's measured
float32 GEMM peak (`convbench.roofline`).  Run it with OpenBLAS free to pick its best kernel::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/speed.py

``--isa avx2`` runs the same comparison capped at AVX2, every contender alike: the script runs
itself again with Numba compiling for Haswell (``NUMBA_CPU_NAME``, and ``NUMBA_CPU_FEATURES``
with everything newer turned off: the name alone keeps the host's features), oneDNN capped by
``ONEDNN_MAX_CPU_ISA=AVX2`` and OpenBLAS by ``OPENBLAS_CORETYPE=Haswell``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import convbench
from convbench import api, registry, roofline, runner, sweep
from convbench.spec import DIRECTIONS, ConvSpec
from convbench.timing import measure

# Named selections: (preset, regular expression on layer names).
SELECTIONS = {
    "resnet50": ("resnet50", r"resnet50:(conv1|res2a_branch2b|res3b_branch2b|res4b_branch2b|"
                             r"res5b_branch2b|res3a_branch2b|res2a_branch2c|res4b_branch2a)"),
    "mobilenet-dw": ("mobilenet", r"mobilenet:conv_dw_\d+"),
    "large": ("filters", r""),
    "quick": ("smoke", r""),
}
BASELINE = "torch"


@dataclass
class Contender:
    """One algorithm on one layer: how to call it, and its best times so far."""

    name: str
    call: object
    compute: object
    error: float
    best: dict = field(default_factory=lambda: {"call": np.inf, "compute": np.inf})


def layers(preset: str, match: str, filters=None) -> list[ConvSpec]:
    """The layers of ``preset`` whose name matches ``match`` (all when empty), in preset
    order; ``filters`` keeps only those filter sizes (the ``large`` selection: 9 and 15)."""
    found = [p for p in sweep.preset(preset).problems
             if re.fullmatch(match, p.name) or not match]
    return [p for p in found if filters is None or p.r in filters]


def contenders(spec: ConvSpec, only=None) -> list[Contender]:
    """Every CPU registry entry that computes ``spec`` (a standard convolution, in its
    direction), each checked once against the float64 reference; ``only``: just these."""
    a, b, ref = runner.operands(spec)
    out = []
    for algo in registry.algorithms("cpu"):
        if algo.operator != "conv" or algo.supports(spec) is not None or not (
                algo.default or algo.name == BASELINE) or (only and algo.name not in only):
            continue
        y = np.empty(spec.result_shape, spec.dtype)
        compute = partial(algo.prepare(b, spec), a, y)
        compute()
        error = float(np.abs(y - ref).max() / np.abs(ref).max())
        if spec.direction == "fwd":
            call = partial(convbench.conv2d, a, b, spec.stride, spec.padding, spec.dilation,
                           spec.groups, algo=algo.name)
        else:
            call = partial(api.run, algo, spec, a, b)
        out.append(Contender(algo.name, call, compute, error))
    return out


def time_layer(spec: ConvSpec, min_time: float, rounds: int, only=None) -> list[Contender]:
    """Every contender on ``spec`` in ``rounds`` interleaved rounds; best round's medians.
    The contenders come back with their prepared kernels released: a preset's layers each
    kept alive with its workspaces (U-Net's at batch 8: 2-4 GB each) outgrow the memory."""
    found = contenders(spec, only)
    for _ in range(rounds):
        for c in found:
            for kind in ("call", "compute"):
                t = measure(getattr(c, kind), min_time=min_time / rounds / 2, values=5,
                            warmups=1).stats["median"]
                c.best[kind] = min(c.best[kind], t)
    for c in found:
        c.call = c.compute = None
    return found


def print_layer(spec: ConvSpec, found: list[Contender], peak: float) -> None:
    base = next((c.best["call"] for c in found if c.name == BASELINE), None)
    for c in sorted(found, key=lambda c: c.name != BASELINE):
        t = c.best["call"]
        gflops = spec.flops / t / 1e9
        ratio = f"{t / base:8.2f}" if base else f"{'':>8}"
        print(f"{spec.name:<28} {c.name:<13} {t * 1e3:9.3f} {c.best['compute'] * 1e3:10.3f} "
              f"{gflops:8.1f} {gflops / peak:6.0%} {ratio} {c.error:9.1e}")


def summary(results: list[tuple[ConvSpec, list[Contender]]], roof) -> None:
    """Per layer the best convbench call over PyTorch's (geometric mean and worst), and for
    depthwise layers the bandwidth each reaches."""
    rows = []
    for spec, found in results:
        times = {c.name: c.best["call"] for c in found}
        if BASELINE not in times:
            continue
        base = times.pop(BASELINE)
        if times:
            best = min(times, key=times.get)
            rows.append((spec, best, times[best] / base, times.get("winograd_f43", np.inf) / base))
    if rows:
        print(f"\nbest convbench call / {BASELINE} (oneDNN) per layer")
        for spec, best, ratio, f43 in rows:
            extra = f"   winograd_f43 {f43:.2f}" if np.isfinite(f43) else ""
            print(f"  {spec.name:<28} {best:<13} {ratio:5.2f}{extra}")
        ratios = [r for _, _, r, _ in rows]
        print(f"  geometric mean {np.exp(np.mean(np.log(ratios))):.3f}, worst {max(ratios):.2f}")
    dw = [(spec, found) for spec, found in results if spec.groups == spec.c]
    if dw:
        print("\ndepthwise: compulsory bytes (input, weights, output) per second, as a fraction "
              "of the triad bandwidth of the level holding them, and GFLOP/s as a fraction of "
              "the lower of the peak and that bandwidth times the layer's FLOPs per byte"
              f"\n  {roofline.summary(roof)}")
        for spec, found in dw:
            for c in (c for c in found if c.name in ("depthwise", BASELINE)):
                t = c.best["call"]
                level = roofline.memory_level(spec.min_bytes, roof)
                gbs = spec.min_bytes / t / 1e9
                # the roofline's limit at this layer's intensity: bandwidth or peak, the lower
                limit = min(roof.peak_gflops[spec.dtype],
                            spec.flops / spec.min_bytes * roof.bandwidth_gbs[level])
                print(f"  {spec.name:<28} {c.name:<10} {gbs:7.1f} GB/s "
                      f"{gbs / roof.bandwidth_gbs[level]:6.1%} of {level}, "
                      f"{spec.flops / t / 1e9 / limit:6.1%} of the roofline's limit")


def avx2_environment() -> dict:
    """This process's environment with every contender capped at AVX2."""
    import llvmlite.binding as ll

    from convbench_kernels.cpu import target

    env = dict(os.environ)
    env.update(NUMBA_CPU_NAME="haswell", ONEDNN_MAX_CPU_ISA="AVX2", OPENBLAS_CORETYPE="Haswell",
               NUMBA_CPU_FEATURES=target.avx2_features(ll.get_host_cpu_features().flatten()),
               CONVBENCH_SPEED_ISA="avx2")
    return env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", choices=sorted([*SELECTIONS, "all"]), default="resnet50")
    ap.add_argument("--preset", help="time this preset's layers instead of a selection")
    ap.add_argument("--match", default="", help="with --preset: a regex on layer names")
    ap.add_argument("--algo", default="",
                    help="comma-separated algorithm names to time (default: every one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3,
                    help="seconds of timing per contender and layer, over all rounds")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds; each contender keeps its best round's median")
    ap.add_argument("--remeasure", action="store_true",
                    help="measure the machine's ceilings in this run (and cache them)")
    ap.add_argument("--isa", choices=["native", "avx2"], default="native",
                    help="avx2: every contender capped at AVX2 (see the module docstring)")
    ap.add_argument("--dir", choices=DIRECTIONS, default="fwd",
                    help="the direction of every layer: fwd, or a gradient (bwd_d, bwd_w)")
    ap.add_argument("--batch", type=int, default=0,
                    help="run every layer at this batch size (default: the layers' own)")
    args = ap.parse_args(argv)
    if args.isa == "avx2" and os.environ.get("CONVBENCH_SPEED_ISA") != "avx2":
        return subprocess.run([sys.executable, __file__, *argv], env=avx2_environment()).returncode

    if args.preset:
        specs = layers(args.preset, args.match)
    else:
        names = list(SELECTIONS) if args.layers == "all" else [args.layers]
        specs = [s for n in names for s in layers(*SELECTIONS[n],
                                                  filters=(9, 15) if n == "large" else None)]
    specs = [s.with_(direction=args.dir, **({"n": args.batch} if args.batch else {}))
             for s in specs]
    numba.set_num_threads(args.threads)
    # oneDNN's best case: glibc serves blocks above its mmap threshold with fresh pages (each
    # faulting in at first touch), and raises that threshold to the largest such block freed.
    # One 30 MiB block freed here lets PyTorch reuse heap pages for every layer, as in any
    # process that has freed a large array; convbench's kernels pool their workspaces anyway.
    np.ones(30 << 18, np.float32)
    roof, _ = roofline.load_or_measure(args.threads, remeasure=args.remeasure)
    with threadpool_limits(1, user_api="blas"):  # as in a sweep
        blas = sorted({(i["internal_api"], i.get("version"), i.get("architecture"))
                       for i in threadpool_info() if i["user_api"] == "blas"})
        print(f"Numba target: {registry.cpu_target().describe()}; oneDNN ISA cap: "
              f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'none')}")
        print(f"threads {args.threads}; BLAS {blas}; {roofline.summary(roof)}")
        print(f"direction {args.dir}; batch {specs[0].n if specs else ''}")
        head = (f"{'layer':<28} {'algorithm':<13} {'call ms':>9} {'compute ms':>10} "
                f"{'GFLOP/s':>8} {'peak':>6} {'/' + BASELINE:>8} {'rel err':>9}")
        print(head)
        print("-" * len(head))
        results = []
        for spec in specs:
            found = time_layer(spec, args.min_time, args.rounds,
                               {a for a in args.algo.split(",") if a})
            print_layer(spec, found, roof.peak_gflops[spec.dtype])
            results.append((spec, found))
    summary(results, roof)


if __name__ == "__main__":
    sys.exit(main())
