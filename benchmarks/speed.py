"""Side-by-side speed of every CPU algorithm and PyTorch's conv2d (oneDNN), in one process.

Batch 1, fp32, the same thread count for Numba and PyTorch (BLAS single-threaded inside Numba's
threads, as in the harness).  Each algorithm is timed as a
user calls ``convbench.conv2d``: filter transforms included (``call``); the steady step alone
(``compute``, prepare excluded) is shown beside it.  PyTorch is optional: without it the ratio
column is empty.  Run it with OpenBLAS free to pick its best kernel:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/speed.py

Options: ``--layers resnet50|large|mobilenet-dw|quick|all``, ``--threads N``, ``--min-time S``,
``--rounds N``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numba
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import convbench
from convbench.spec import ConvSpec

LAYERS = {
    "resnet50": [
        ConvSpec(c=3, h=224, k=64, r=7, stride=2, padding=3, name="conv1 7x7 s2"),
        ConvSpec(c=64, h=56, k=64, r=3, padding=1, name="3x3 64 @56"),
        ConvSpec(c=128, h=28, k=128, r=3, padding=1, name="3x3 128 @28"),
        ConvSpec(c=256, h=14, k=256, r=3, padding=1, name="3x3 256 @14"),
        ConvSpec(c=512, h=7, k=512, r=3, padding=1, name="3x3 512 @7"),
        ConvSpec(c=128, h=56, k=128, r=3, stride=2, padding=1, name="3x3 128 s2 @56"),
        ConvSpec(c=64, h=56, k=256, r=1, name="1x1 64->256 @56"),
        ConvSpec(c=1024, h=14, k=256, r=1, name="1x1 1024->256 @14"),
    ],
    "large": [
        ConvSpec(c=32, h=64, k=32, r=9, padding="same", name="9x9 32 @64"),
        ConvSpec(c=32, h=64, k=32, r=15, padding="same", name="15x15 32 @64"),
    ],
    "quick": [
        ConvSpec(c=32, h=32, k=32, r=3, padding=1, name="3x3 32 @32"),
        ConvSpec(c=32, h=32, k=32, r=7, padding="same", name="7x7 32 @32"),
        ConvSpec(c=32, h=32, k=32, r=3, groups=32, padding=1, name="dw 3x3 32 @32"),
    ],
}
# MobileNet v1's depthwise 3x3 layers (DESIGN.md), channel multiplier 1
LAYERS["mobilenet-dw"] = [
    ConvSpec(c=c, h=h, k=c, r=3, stride=st, padding=1, groups=c,
             name=f"dw {c}{' s2' if st == 2 else ''} @{h}")
    for c, h, st in [(32, 112, 1), (64, 112, 2), (128, 56, 1), (128, 56, 2), (256, 28, 1),
                     (256, 28, 2), (512, 14, 1), (512, 14, 2), (1024, 7, 1)]
]
LAYERS["all"] = LAYERS["resnet50"] + LAYERS["large"] + LAYERS["mobilenet-dw"]


def median_time(fn, min_time: float) -> float:
    """Median seconds of ``fn()`` over at least 5 calls and ``min_time`` seconds, after a warmup."""
    fn()
    values, start = [], time.perf_counter()
    while len(values) < 5 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        values.append(time.perf_counter() - t0)
    return statistics.median(values)


def torch_conv(spec: ConvSpec, x, w):
    try:
        import torch
    except ImportError:
        return None
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    pt, pb, pl, pr = spec.pads
    if (pt, pl) != (pb, pr):
        return None

    def call():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, wt, stride=spec.stride, padding=(pt, pl),
                                              dilation=spec.dilation, groups=spec.groups)

    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", choices=sorted(LAYERS), default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3,
                    help="seconds of timing per contender and layer, over all rounds")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds; each contender keeps its best round's median")
    args = ap.parse_args(argv)

    numba.set_num_threads(args.threads)
    # oneDNN's best case: glibc serves blocks above its mmap threshold with fresh pages, which
    # fault in at 3-4 us per 4 KiB page on this VM (conv1: 1.48 ms instead of 0.53), and it
    # raises that threshold to the size of the largest such block freed (up to 32 MiB).  One
    # 30 MiB block freed here lets PyTorch reuse heap pages for every layer, as it does in any
    # process that has freed a large array; convbench's kernels reuse their own workspaces
    # either way.
    np.ones(30 << 18, np.float32)
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    # BLAS on one thread, as in the harness: convbench's kernels call it from Numba's threads
    with threadpool_limits(1, user_api="blas"):
        blas = sorted({(i["internal_api"], i.get("version"), i.get("architecture"))
                       for i in threadpool_info() if i["user_api"] == "blas"})
        print(f"threads {args.threads}; BLAS {blas}; torch {torch_version}")
        head = (f"{'layer':<20} {'algorithm':<13} {'call ms':>9} {'compute ms':>10} "
                f"{'GFLOP/s':>8} {'/oneDNN':>8} {'rel err':>9}")
        print(head)
        print("-" * len(head))
        results = []  # (spec, torch seconds or None, {algorithm: call seconds})
        for spec in LAYERS[args.layers]:
            results.append(time_layer(spec, args.min_time, args.rounds))
    summary(results)


def summary(results) -> None:
    """The issue's targets: best convbench call / oneDNN over the ResNet-50 layers (geometric
    mean and worst), Winograd F(4,3) against oneDNN, depthwise against PyTorch's depthwise."""
    resnet = {s.name for s in LAYERS["resnet50"]}
    rows = [(s, t, c) for s, t, c in results if s.name in resnet and t]
    if rows:
        print("\nResNet-50 layers: best convbench call / oneDNN")
        ratios = []
        for spec, t_torch, calls in rows:
            best = min(calls, key=calls.get)
            ratios.append(calls[best] / t_torch)
            f43 = calls.get("winograd_f43")
            extra = f"   winograd_f43 {f43 / t_torch:.2f}" if f43 else ""
            print(f"  {spec.name:<20} {best:<13} {ratios[-1]:5.2f}{extra}")
        wins = sum(c.get("winograd_f43", np.inf) < t for _, t, c in rows)
        print(f"  geometric mean {np.exp(np.mean(np.log(ratios))):.3f}, worst {max(ratios):.2f}, "
              f"winograd_f43 faster than oneDNN on {wins} layers")
    dw = [(s, t, c) for s, t, c in results if s.groups == s.c and t and "depthwise" in c]
    if dw:
        from convbench import roofline

        roof, _ = roofline.load_or_measure(numba.get_num_threads())
        print("\nDepthwise layers: depthwise call / PyTorch depthwise; bytes moved at minimum "
              "(input, weights, output) per second, as a fraction of the triad bandwidth of the "
              f"level that holds them.\n  {roofline.summary(roof)}")
        worst = 0.0
        for spec, t_torch, calls in dw:
            t = calls["depthwise"]
            level = roofline.memory_level(spec.min_bytes, roof)
            gbs = spec.min_bytes / t / 1e9
            worst = max(worst, t / t_torch)
            print(f"  {spec.name:<20} {t / t_torch:5.2f}   {gbs:6.1f} GB/s "
                  f"{gbs / roof.bandwidth_gbs[level]:6.1%} of {level:<4} "
                  f"(PyTorch {spec.min_bytes / t_torch / 1e9:.1f} GB/s)")
        print(f"  worst ratio {worst:.2f}")


def time_layer(spec: ConvSpec, min_time: float, rounds: int):
    """Time oneDNN and every convbench algorithm on ``spec``, print their rows, and return
    ``(spec, oneDNN seconds or None, {algorithm: seconds per call})``.

    Each is timed in ``rounds`` interleaved rounds (oneDNN, then each algorithm, again and
    again) and keeps its best round's median: a burst of load from elsewhere on the machine
    then costs a round, not the comparison, and every contender gets the same treatment.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(spec.input_shape).astype(np.float32)
    w = rng.standard_normal(spec.weight_shape).astype(np.float32)
    ref = convbench.reference_conv2d(x, w, spec.stride, spec.padding, spec.dilation,
                                     spec.groups)
    contenders = {}  # name -> (call, compute or None)
    fn = torch_conv(spec, x, w)
    if fn is not None:
        contenders["onednn"] = (fn, None)
    errors = {}
    for algo in convbench.algorithms("cpu"):
        if algo.operator != "conv" or algo.family == "baseline" or algo.supports(spec):
            continue
        out = np.empty(spec.output_shape, np.float32)
        compute = partial(algo.prepare(w, spec), x, out)
        compute()
        errors[algo.name] = np.abs(out - ref).max() / np.abs(ref).max()
        call = partial(convbench.conv2d, x, w, spec.stride, spec.padding, spec.dilation,
                       spec.groups, algo=algo.name)
        contenders[algo.name] = (call, compute)
    best = {name: [np.inf, np.inf] for name in contenders}
    for _ in range(rounds):
        for name, (call, compute) in contenders.items():
            best[name][0] = min(best[name][0], median_time(call, min_time / rounds))
            if compute is not None:
                best[name][1] = min(best[name][1], median_time(compute, min_time / rounds))
    t_torch = best.pop("onednn")[0] if "onednn" in best else None
    if t_torch:
        print(f"{spec.name:<20} {'onednn':<13} {t_torch * 1e3:9.3f} {'':>10} "
              f"{spec.flops / t_torch / 1e9:8.1f} {1:8.2f}")
    for name, (t_call, t_compute) in best.items():
        ratio = f"{t_call / t_torch:8.2f}" if t_torch else f"{'':>8}"
        print(f"{spec.name:<20} {name:<13} {t_call * 1e3:9.3f} {t_compute * 1e3:10.3f} "
              f"{spec.flops / t_call / 1e9:8.1f} {ratio} {errors[name]:9.1e}")
    return spec, t_torch, {name: t[0] for name, t in best.items()}


if __name__ == "__main__":
    main()
