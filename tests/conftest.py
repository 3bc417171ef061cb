"""Test-session setup shared by every test group.

Without a GPU, CUDA code runs on Numba's CUDA simulator: the variable must be set before
``numba`` is first imported, which is why it is set here, at collection start.  On a machine
with an NVIDIA GPU (or with the variable already set) nothing changes.
"""

import os
from pathlib import Path

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not Path("/dev/nvidia0").exists():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
