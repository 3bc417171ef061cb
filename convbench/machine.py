"""The environment a run was measured in: versions, CPU, threads, BLAS, GPU, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import llvmlite.binding as llvm
import numba
from threadpoolctl import threadpool_info

from . import devices

# OpenBLAS core types that use AVX-512 / AVX2 kernels.  A library pinned below what the CPU
# supports (OPENBLAS_CORETYPE=Haswell on an AVX-512 machine) runs GEMMs at about half speed.
_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
_AVX2_CORES = _AVX512_CORES | {"haswell", "zen"}


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """Instruction-set features as LLVM sees them (what Numba compiles for)."""
    return sorted(f for f, on in llvm.get_host_cpu_features().items() if on)


def blas_info() -> list[dict]:
    """Every BLAS library loaded in this process: implementation, version, kernel, threads."""
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info() if lib["user_api"] == "blas"]


def blas_warning(blas: list[dict] | None = None, features: list[str] | None = None) -> str | None:
    """A sentence when a loaded BLAS runs a kernel below what the CPU supports, else None."""
    blas = blas_info() if blas is None else blas
    features = set(cpu_features() if features is None else features)
    want = _AVX512_CORES if "avx512f" in features else _AVX2_CORES if "avx2" in features else None
    if want is None:
        return None
    slow = sorted({f"{b['prefix']} ({b['architecture']})" for b in blas
                   if b.get("internal_api") == "openblas" and b.get("architecture")
                   and b["architecture"].lower() not in want})
    if not slow:
        return None
    best = "AVX-512" if want is _AVX512_CORES else "AVX2"
    return (f"BLAS kernel below this CPU ({best}): {', '.join(slow)}; GEMM-based algorithms run "
            f"at about half speed (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r})")


def gpu_info() -> dict:
    """The CUDA device (name, compute capability, driver), or why there is none."""
    usable, reason = devices.cuda_status()
    if not usable:
        return {"available": False, "reason": reason}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return {"available": True, "simulated": True, "name": "CUDA simulator"}
    from numba import cuda

    try:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        return {"available": True, "simulated": False, "name": name,
                "compute_capability": list(dev.compute_capability),
                "driver": cuda.cudadrv.driver.driver.get_version()}
    except Exception as err:  # the driver can fail in many ways; record, don't crash
        return {"available": False, "reason": f"CUDA unavailable: {err}"}


def git_commit() -> str | None:
    """The commit of the convbench checkout, when it is one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "-uno"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def versions() -> dict:
    pkgs = ("numpy", "numba", "llvmlite", "scipy", "pandas", "pyarrow", "rocket-fft",
            "threadpoolctl", "convbench", "numba-cuda", "torch")
    out = {"python": sys.version.split()[0]}
    for p in pkgs:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable, else free pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def threading_layer() -> str | None:
    """Numba's threading layer; known only once a parallel function has run."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def load_warning(load: float | None = None, cores: int | None = None) -> str | None:
    """A sentence when other work keeps the CPUs busy (1-minute load average over half the
    usable cores): every timing of the run is then suspect."""
    if load is None:
        if not hasattr(os, "getloadavg"):
            return None
        load = os.getloadavg()[0]
    if cores is None:
        cores = usable_cores()
    if load <= 0.5 * cores:
        return None
    return (f"the machine is busy (load average {load:.1f} on {cores} cores): other processes "
            "share the CPUs, so times are inflated and noisy")


def _cpu_seconds() -> float | None:
    """Seconds the CPUs have spent busy since boot, all processes together (Linux's
    /proc/stat: user, nice, system, irq, softirq and steal time); None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores other work used while a measurement ran: the CPUs' busy time (and the
    hypervisor's stolen time) minus this process's own, over the wall time.  Use as a context
    manager; ``cores`` is set on exit: None where the OS does not say, or when the interval
    was too short for the kernel's 10 ms accounting ticks to tell (`MIN_SECONDS`)."""

    MIN_SECONDS = 0.25

    def __enter__(self):
        self._start = (time.perf_counter(), time.process_time(), _cpu_seconds())
        self.cores = None
        return self

    def __exit__(self, *exc):
        wall0, own0, all0 = self._start
        all1 = _cpu_seconds()
        wall = time.perf_counter() - wall0
        if all0 is not None and all1 is not None and wall >= self.MIN_SECONDS:
            own = time.process_time() - own0
            self.cores = max((all1 - all0 - own) / wall, 0.0)
        return False


# Other work on more than this many cores while a ceiling is measured makes the measurement
# too low to keep: on 2 cores a second process measuring at once read 20-40 % lower peaks.
BUSY_CORES = 0.5


def busy_reason(load: OtherLoad, cores: int | None = None) -> str | None:
    """Why a measurement taken under ``load`` must not be kept (other work on more than
    `BUSY_CORES` cores during it), or None.  (The load average is no guide: it counts this
    process too, and lags by a minute.)"""
    cores = cores or usable_cores()
    if load.cores is not None and load.cores > BUSY_CORES:
        return f"other work used {load.cores:.1f} of {cores} cores while it was measured"
    return None


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fingerprint() -> dict:
    """Everything about this machine and process that a result depends on."""
    return {
        "versions": versions(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_name": llvm.get_host_cpu_name(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores() if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
        "blas": blas_info(),
        "blas_warning": blas_warning(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "load_warning": load_warning(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "NUMBA_",
                                                                      "OMP_", "MKL_"))},
        "gpu": gpu_info(),
        "git_commit": git_commit(),
    }
