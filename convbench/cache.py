"""Per-machine caches: one directory, one machine key, versioned JSON files written atomically.

What convbench measures about a machine (its roofline, its tuned kernel parameters) is kept
between runs, one JSON file per kind and machine key in `cache_dir`.  The *machine key*
(`machine_key`) holds everything that changes those measurements: the CPU model, the target
Numba compiles for (LLVM's CPU name, ISA, vector width and features), the cores and threads,
every BLAS library's implementation, version and kernel (``OPENBLAS_CORETYPE`` changes it),
and the versions of Numba, llvmlite and convbench.  A file is used only when its key and its
format version match exactly: a changed key is a miss, a corrupt or foreign file a miss with
a reason (`read`), never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path

import llvmlite
import numba

from . import machine, registry


def cache_dir() -> Path:
    """``$CONVBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/convbench``, else
    ``~/.cache/convbench``."""
    if os.environ.get("CONVBENCH_CACHE_DIR"):
        return Path(os.environ["CONVBENCH_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "convbench"
    return Path.home() / ".cache" / "convbench"


def machine_key(threads: int) -> dict:
    """Everything about this machine and process that a cached measurement depends on.

    SciPy's BLAS (the one ``np.dot`` in Numba calls) is loaded first, so that the list of
    BLAS libraries does not depend on what ran before.
    """
    import scipy.linalg.cython_blas  # noqa: F401 - loads the BLAS the kernels call

    from . import __version__

    blas = sorted(({"internal_api": b.get("internal_api"), "version": b.get("version"),
                    "architecture": b.get("architecture")} for b in machine.blas_info()),
                  key=lambda b: json.dumps(b, sort_keys=True))
    target = registry.cpu_target()
    features = ",".join(sorted(target.features))
    return {"cpu_model": machine.cpu_model(), "cpu_name": target.cpu_name, "isa": target.isa,
            "vector_bits": target.vector_bits,
            "features": hashlib.sha256(features.encode()).hexdigest()[:16],
            "cores": os.cpu_count(), "threads": int(threads), "blas": blas,
            "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "convbench": __version__}


def machine_id(threads: int) -> str:
    """The stable name of this machine in a run's rows and ``meta.json``: the host name and a
    digest of `machine_key` (``node7-3f9a0c1e``).  Volatile fields (load, free memory, the
    git commit) are left out, so that every run on the same machine, threads and software
    names it alike, and two hosts of one model stay apart."""
    digest = hashlib.sha256(json.dumps(machine_key(threads), sort_keys=True).encode())
    return f"{platform.node() or 'unknown'}-{digest.hexdigest()[:8]}"


def path(kind: str, key: Mapping) -> Path:
    """The file of ``kind`` (``roofline``, ``tuning``) for ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"{kind}-{digest}.json"


def read(file: Path, key: Mapping, version: int) -> tuple[dict | None, str]:
    """``(data, "")`` when ``file`` holds JSON of format ``version`` written under ``key``;
    else ``(None, why)``: ``"missing"``, or a reason a corrupt or foreign file is ignored."""
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as err:
        return None, f"{file} is not readable JSON ({type(err).__name__}); ignored"
    if not isinstance(data, dict) or data.get("format") != version:
        return None, f"{file} has another format than {version}; ignored"
    if data.get("key") != dict(key):
        return None, f"{file} was written for another machine key; ignored"
    return data, ""


def write(file: Path, data: Mapping) -> bool:
    """Write ``data`` as JSON atomically (a reader never sees half a file, two writers never
    mix theirs); whether it was written (a cache that cannot be written is skipped)."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, file)
        return True
    except OSError:
        return False
