"""benchmarks/cuda_compile.py on a few kernels: the real compile path (NVVM, ptxas) that the
simulator never takes.  Needs NVIDIA's compiler libraries, not a GPU; skipped without them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_depthwise_and_winograd_compile_for_sm80_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cuda_compile.py"),
                          "--cc", "80", "--dtype", "float32", "--only", "depthwise,winograd"],
                         env=env, capture_output=True, text=True, timeout=600)
    if res.returncode == 77:
        pytest.skip("no CUDA compiler libraries: " + res.stderr.strip()[-200:])
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln.split() for ln in res.stdout.splitlines()[1:]]
    assert len(lines) == 7  # depthwise, F(2,3), F(4,3) and F(6,3) input and output transforms
    for row in lines:
        regs, spills, occupancy = int(row[-6]), row[-5], row[-1]
        assert 0 < regs <= 255 and spills == "0/0" and occupancy.endswith("%"), row
