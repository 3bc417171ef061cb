"""benchmarks/speed.py runs end to end on tiny layers (its figures are its output, not
checked here: speed is proved by running it, not by timed assertions)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_speed_script_prints_every_contender_and_the_summary():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--layers",
                           "quick", "--min-time", "0.002", "--rounds", "1", "--threads", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for name in ("direct", "im2col", "fft", "winograd_f43", "depthwise"):
        assert f" {name} " in out
    assert "peak GEMM" in out and "depthwise: compulsory bytes" in out
