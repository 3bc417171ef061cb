"""Compile every CUDA kernel for real GPUs, without one: registers, spills, shared memory.

For each kernel of the CUDA families, dtype (float32, float64) and compute capability, Numba
compiles the kernel to PTX (`numba.cuda.compile_ptx`, NVIDIA's NVVM) and ``ptxas -v``
assembles it, reporting registers per thread, spill stores and loads, and static shared
memory.  From those and the block size the kernel launches with, one line also gives the
blocks per SM that registers, shared memory and threads allow, and the occupancy (resident
warps over the SM's 64).  No GPU or driver is needed, only NVIDIA's compiler libraries:

    pip install "convbench[cuda-dev]"   # nvidia-cuda-nvcc (NVVM, ptxas), nvidia-cuda-nvrtc
    python benchmarks/cuda_compile.py --cc 80,90

Kernels are compiled with flat indices split in 32-bit arithmetic (the path every problem
whose totals fit takes).  Exit status 1 when a kernel fails to compile or spills, 77 when
the compiler libraries are missing.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("cuda_compile.py compiles for real GPUs: unset NUMBA_ENABLE_CUDASIM")

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402
from numba import types as T  # noqa: E402

from convbench_kernels.cuda import (  # noqa: E402
    depthwise,
    direct,
    fft,
    gemm,
    im2col,
    strided,
    weight_grad,
    winograd,
)

# Per-SM limits of the compute capabilities checked (CUDA C Programming Guide, "Technical
# Specifications per Compute Capability"): registers, threads, resident blocks, shared memory
# (the runtime reserves 1 KiB of it per block).
SM = {80: dict(regs=65536, threads=2048, blocks=32, smem=164 * 1024),
      90: dict(regs=65536, threads=2048, blocks=32, smem=228 * 1024)}
REG_UNIT = 256  # registers are allocated per warp in units of 256
RESERVED_SMEM = 1024


def _arr(dt, ndim, layout="C"):
    return T.Array(dt, ndim, layout)


def catalogue(dtype):
    """``[(family, kernel, dispatcher, signature, threads per block)]`` for ``dtype``."""
    ft = T.float32 if dtype == "float32" else T.float64
    ct = T.complex64 if dtype == "float32" else T.complex128
    ix = np.uint32
    i = T.int64
    tiles = [gemm.Tile(threads, threads, regs, regs) for threads, regs in gemm.LEVELS]
    tiles.append(gemm.Tile(gemm.SMALL, 16, 1, 4))  # a short M (Winograd's few channels)
    out = [("gemm", f"gemm {t.ty * t.rm}x{t.tx * t.rn}", gemm._kernel(t),
            (_arr(ft, 3),) * 3, t.ty * t.tx) for t in tiles]
    for kb in (4, 1):
        out.append(("direct", f"direct kb={kb}", direct._kernel(kb, ix),
                    (_arr(ft, 4), _arr(ft, 6), *(i,) * 7, _arr(ft, 5)), direct.THREADS))
    out.append(("direct", "sum_parts", direct._sum_parts, (_arr(ft, 2), _arr(ft, 1)),
                direct.THREADS))
    out.append(("im2col", "im2col", im2col._im2col_kernel(ix),
                (_arr(ft, 4), *(i,) * 10, _arr(ft, 3)), im2col.IM2COL_THREADS))
    out.append(("depthwise", "depthwise", depthwise._depthwise_kernel(np.dtype(dtype), ix),
                (_arr(ft, 4), _arr(ft, 3), *(i,) * 7, _arr(ft, 4)), depthwise.THREADS))
    for m in (2, 4, 6):
        fwd, inv = winograd._transform_kernels(m + 2, np.dtype(dtype), ix)
        out.append(("winograd", f"F({m},3) input", fwd,
                    (_arr(ft, 4), _arr(ft, 2), i, i, i, i, _arr(ft, 4)),
                    winograd.TRANSFORM_THREADS))
        out.append(("winograd", f"F({m},3) output", inv,
                    (_arr(ft, 4), _arr(ft, 2), i, i, _arr(ft, 4)), winograd.TRANSFORM_THREADS))
    smem = fft.SMEM_BYTES // (ct.bitwidth // 8)
    a3, a4 = _arr(ct, 3), _arr(ct, 4)
    gather, reduce, crop = fft._conv_kernels(ix)
    out += [("fft", "fft_shared", fft._fft_shared_kernel(smem, ix),
             (a3, _arr(ct, 1), i, T.boolean, i, i), fft.TPB),
            ("fft", "fft_stage", fft._fft_stage_kernel(ix),
             (a3, a3, _arr(ct, 1), i, T.boolean), fft.TPB),
            ("fft", "copy", fft._copy, (_arr(ct, 1), _arr(ct, 1)), fft.TPB),
            ("fft", "gather", gather, (_arr(ft, 4), a4, ct, ct), fft.TPB),
            ("fft", "reduce", reduce, (a4, _arr(ct, 5), a4, _arr(i, 1), _arr(i, 1), ct),
             fft.TPB),
            ("fft", "crop", crop, (a4, _arr(ft, 4), i, i, i, i), fft.TPB)]
    # the gradients: the input's phase moves, the weights' direct kernel
    copy, zero = strided._kernels(ix)
    a4f = _arr(ft, 4)
    out += [("bwd_d", "strided copy", copy, (a4f, *(i,) * 4, a4f, *(i,) * 7),
             strided.THREADS),
            ("bwd_d", "strided zero", zero, (a4f, *(i,) * 7), strided.THREADS),
            ("bwd_w", "weight_grad", weight_grad._kernel(np.dtype(dtype)),
             (a4f, a4f, *(i,) * 7, a4f), weight_grad.THREADS)]
    return out


def find_ptxas() -> str | None:
    """``ptxas`` from NVIDIA's pip packages (the release of the NVVM that Numba loads from
    them: an older ptxas rejects a newer NVVM's PTX version), else the one on the PATH."""
    site = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
    for candidate in sorted(site.glob("*/bin/ptxas")):
        return str(candidate)
    return shutil.which("ptxas")


def assemble(ptxas: str, ptx: str, cc: int) -> dict:
    """Registers, spill bytes and static shared bytes that ``ptxas -v`` reports."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        res = subprocess.run([ptxas, "--gpu-name", f"sm_{cc}", "-v", str(src),
                              "-o", str(Path(tmp) / "k.cubin")],
                             capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(res.stderr.strip()[-500:])
    text = res.stderr + res.stdout

    def number(pattern):
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    return {"regs": number(r"Used (\d+) registers"),
            "spill_st": number(r"(\d+) bytes spill stores"),
            "spill_ld": number(r"(\d+) bytes spill loads"),
            "smem": number(r"(\d+) bytes smem")}


def occupancy(info: dict, threads: int, cc: int) -> tuple[int, float]:
    """(resident blocks per SM, resident warps / 64) for a block of ``threads``."""
    sm = SM[cc]
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(info["regs"], 1) * 32 / REG_UNIT) * REG_UNIT
    by_regs = (sm["regs"] // per_warp) // warps
    by_smem = sm["smem"] // (info["smem"] + RESERVED_SMEM)
    blocks = min(by_regs, by_smem, sm["threads"] // (warps * 32), sm["blocks"])
    return blocks, blocks * warps / (sm["threads"] // 32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="80,90", help="compute capabilities (default 80,90)")
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--only", default="", help="families to compile (default: all)")
    args = ap.parse_args(argv)
    ccs = [int(c) for c in args.cc.split(",")]
    unknown = [c for c in ccs if c not in SM]
    if unknown:
        ap.error(f"--cc: no SM limits known for {unknown} (known: {sorted(SM)})")
    ptxas = find_ptxas()
    try:
        cuda.compile_ptx(lambda a: None, (T.float32[::1],), cc=(8, 0))
    except Exception as err:  # no NVVM: nothing can be compiled here
        print(f"no CUDA compiler (NVVM): {err}".splitlines()[0], file=sys.stderr)
        return 77
    if ptxas is None:
        print("no ptxas (pip install nvidia-cuda-nvcc)", file=sys.stderr)
        return 77
    only = set(filter(None, args.only.split(",")))
    bad = 0
    print(f"{'family':10s} {'kernel':16s} {'dtype':8s} {'cc':>3s} {'regs':>5s} "
          f"{'spill st/ld':>11s} {'smem':>6s} {'threads':>7s} {'blocks/SM':>9s} {'occupancy':>9s}")
    for dtype in args.dtype.split(","):
        for family, name, kernel, sig, threads in catalogue(dtype):
            if only and family not in only:
                continue
            for cc in ccs:
                try:
                    bounds = kernel.targetoptions.get("launch_bounds")
                    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=divmod(cc, 10),
                                              launch_bounds=bounds)
                    info = assemble(ptxas, ptx, cc)
                except Exception as err:  # report every kernel, then fail
                    bad += 1
                    print(f"{family:10s} {name:16s} {dtype:8s} {cc:3d} FAILED: "
                          f"{str(err).splitlines()[0][:200]}")
                    continue
                blocks, occ = occupancy(info, threads, cc)
                spills = info["spill_st"] + info["spill_ld"]
                bad += spills > 0
                print(f"{family:10s} {name:16s} {dtype:8s} {cc:3d} {info['regs']:5d} "
                      f"{info['spill_st']:>5d}/{info['spill_ld']:<5d} {info['smem']:6d} "
                      f"{threads:7d} {blocks:9d} {occ:9.0%}" + ("  SPILLS" if spills else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
