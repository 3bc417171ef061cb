"""One-shot check of the CUDA kernels on a real GPU: about 5 minutes on one GPU.

1. the device: name, compute capability, SMs, free memory, the empty-kernel launch floor;
2. every CUDA test on the device (``tests/cuda``: without a GPU they run on the simulator);
3. ``compute-sanitizer`` racecheck, synccheck and memcheck on one small problem per CUDA
   registry entry, when the tool is on the PATH;
4. ResNet-50's layers at batch 1 and 32, every CUDA entry against PyTorch's cuDNN
   (``torch.backends.cudnn.benchmark = True``), side by side: cuDNN's time and each entry's
   time as a ratio to it (needs a CUDA build of PyTorch; the ``baselines`` extra pins the CPU
   build, so install one by hand).  Problems whose workspace estimate exceeds half the free
   device memory are skipped, and the section stops when its ``--budget`` runs out.

Nothing to install beyond the ``cuda`` and ``baselines`` extras.  Run it from the repository
root:

    python benchmarks/gpu_check.py [--skip tests,sanitizer,speed] [--budget SECONDS]

Exit status: 0 when every step that ran passed, 1 when one failed, 77 without a usable GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(n=2, c=6, h=9, w=10, k=5, r=3, padding=1)  # partial tiles, odd channels
SANITIZER_TOOLS = ("racecheck", "synccheck", "memcheck")
BATCHES = (1, 32)


def _device_report() -> dict:
    from convbench import devices, machine
    from convbench_kernels.cuda import launch

    gpu = machine.gpu_info()
    if not gpu.get("available") or gpu.get("simulated"):
        return gpu
    dev = devices.get("cuda")
    return {**gpu, "sms": launch.sm_count(), "free_bytes": dev.free_memory(),
            "launch_floor_s": dev.launch_floor()}


def _run_tests() -> bool:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, "-m", "pytest", "tests/cuda", "-q", "-n", "0",
                          "-p", "no:cacheprovider"], cwd=ROOT, env=env, check=False)
    return res.returncode == 0


def small_problems() -> None:
    """Every CUDA entry once on a small problem (the sanitizer's child process)."""
    import numpy as np

    from convbench import devices, registry
    from convbench.spec import ConvSpec

    dev = devices.get("cuda")
    for algo in registry.algorithms("cuda"):
        spec = ConvSpec(**SMALL)
        if algo.supports(spec) is not None:
            spec = ConvSpec(**{**SMALL, "k": SMALL["c"], "groups": SMALL["c"]})
        rng = np.random.default_rng(0)
        x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
        if algo.operator == "separable":
            w = (rng.standard_normal((spec.c, 1, spec.r, spec.s)).astype(spec.dtype),
                 rng.standard_normal((spec.k, spec.c, 1, 1)).astype(spec.dtype))
        else:
            w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
        out = dev.nan(spec.output_shape, spec.dtype)
        algo.prepare(w, spec)(dev.put(x), out)
        dev.get(out)
        print(f"  {algo.name}: ran")


def _sanitize() -> bool | None:
    tool = shutil.which("compute-sanitizer")
    if tool is None:
        print("  compute-sanitizer not on the PATH: skipped")
        return None
    ok = True
    for check in SANITIZER_TOOLS:
        res = subprocess.run([tool, "--tool", check, "--error-exitcode", "1", sys.executable,
                              str(Path(__file__).resolve()), "--small-problems"],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        print(f"  {check}: {'clean' if res.returncode == 0 else 'FAILED'}")
        if res.returncode:
            print(res.stdout[-2000:] + res.stderr[-2000:])
            ok = False
    return ok


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _speed(budget: float) -> None:
    import numpy as np

    from convbench import devices, registry, sweep
    from convbench.timing import measure

    torch = _torch_cuda()
    if torch is None:
        print("  no CUDA build of PyTorch: skipped")
        return
    torch.backends.cudnn.benchmark = True

    def torch_clock():
        torch.cuda.synchronize()
        return time.perf_counter()

    dev = devices.get("cuda")
    algos = registry.algorithms("cuda")
    timed = dict(min_time=0.01, values=3, max_seconds=0.5, warmups=1)
    print(f"  {'layer':26s} {'n':>3s} {'cuDNN ms':>9s} " + " ".join(f"{a.name:>12s}"
                                                               for a in algos))
    end = time.monotonic() + budget
    for n in BATCHES:
        for layer in sweep.preset("resnet50").problems:
            if time.monotonic() > end:
                print(f"  budget of {budget:g} s spent: stopped")
                return
            spec = dataclasses.replace(layer, n=n)
            rng = np.random.default_rng(0)
            x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
            w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
            tx, tw = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
            pt, pb, pl, pr = spec.pads
            if (pt, pl) != (pb, pr):
                tx = torch.nn.functional.pad(tx, (pl, pr, pt, pb))
                pt = pl = 0
            ref = measure(lambda: torch.nn.functional.conv2d(  # noqa: B023
                tx, tw, stride=(spec.sh, spec.sw), padding=(pt, pl),  # noqa: B023
                dilation=(spec.dh, spec.dw), groups=spec.groups),  # noqa: B023
                clock=torch_clock, **timed).stats["median"]
            cells = []
            d_x = dev.put(x)
            for algo in algos:
                cells.append(_ratio(algo, spec, w, d_x, dev, ref, timed))
            print(f"  {layer.name.split(':')[-1]:26s} {n:3d} {ref * 1e3:9.3f} "
                  + " ".join(f"{c:>12s}" for c in cells))


def _ratio(algo, spec, w, d_x, dev, ref, timed) -> str:
    """An entry's time over cuDNN's on ``spec``, or why there is none."""
    from convbench.timing import measure

    if algo.operator != "conv" or algo.supports(spec) is not None:
        return "-"
    free = dev.free_memory() or 0
    if algo.workspace and algo.workspace(spec) > free // 2:
        return "memory"
    try:
        compute = algo.prepare(w, spec)
        out = dev.empty(spec.output_shape, spec.dtype)
        compute(d_x, out)
        t = measure(lambda: compute(d_x, out), clock=dev.clock, **timed).stats["median"]
    except Exception as err:  # one entry's failure must not end the check
        return type(err).__name__[:12]
    return f"{t / ref:.2f}x"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", default="", help="steps to skip: tests,sanitizer,speed")
    ap.add_argument("--budget", type=float, default=150.0,
                    help="seconds for the comparison with cuDNN (default 150)")
    ap.add_argument("--small-problems", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    sys.path.insert(0, str(ROOT))
    if args.small_problems:
        small_problems()
        return 0
    skip = set(filter(None, args.skip.split(",")))
    print("1. device")
    gpu = _device_report()
    for key, value in gpu.items():
        print(f"  {key}: {value}")
    if not gpu.get("available") or gpu.get("simulated"):
        return 77
    ok = True
    if "tests" not in skip:
        print("2. tests/cuda on the device")
        ok &= _run_tests()
    if "sanitizer" not in skip:
        print("3. compute-sanitizer")
        ok &= _sanitize() is not False
    if "speed" not in skip:
        print("4. ResNet-50 against cuDNN (ratio: time / cuDNN's)")
        _speed(args.budget)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
