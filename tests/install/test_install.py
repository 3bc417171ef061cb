"""convbench as others install it: its wheel beside other packages, and a user's plugin package
swept beside the built-ins.  Each test builds and installs into a fresh environment of its own
(seconds; nothing is downloaded: builds use this environment's setuptools)."""

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pip(*args, python=sys.executable, cwd=None):
    """pip of this environment, installing into ``python``'s environment."""
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args,
                           "--no-deps", "--no-build-isolation", "--no-index", "-q"],
                          capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]


def fresh_env(path: Path, parent: bool = False) -> Path:
    """A new virtual environment (no pip); with ``parent``, it also sees this environment's
    packages (a ``.pth`` file adds its site-packages), so that a plugin runs with convbench."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                               "get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    if parent:
        here = sysconfig.get_paths()["purelib"]
        (site / "_parent_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return site


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """convbench's wheel, built from a copy of the source (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("convbench", "kernels"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = out.glob("convbench-*.whl")
    return found


def test_the_wheel_installs_no_top_level_kernels(wheel, tmp_path):
    site = fresh_env(tmp_path / "env")
    pip("install", str(wheel), python=tmp_path / "env" / "bin" / "python")
    assert not (site / "kernels").exists(), "the wheel installs a top-level 'kernels'"
    for path in ("convbench_kernels/__init__.py", "convbench_kernels/contract.py",
                 "convbench_kernels/reference.py", "convbench_kernels/cpu/direct.py",
                 "convbench_kernels/cuda/gemm.py", "convbench/presets/default.toml",
                 "convbench/templates/report.html.j2"):
        assert (site / path).is_file(), f"{path} is missing from the installed wheel"
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"convbench",
                                                                  "convbench_kernels"}


PLUGIN_MODULE = '''
"""A user's own convolution: every filter tap as one matrix product (NumPy only)."""
import numpy as np
import convbench


def supports(spec):
    if spec.groups != 1 or (spec.sh, spec.sw, spec.dh, spec.dw) != (1, 1, 1, 1):
        return "taps_gemm needs groups 1, stride 1, dilation 1"
    return None


def prepare(w, spec):
    pt, pb, pl, pr = spec.pads

    def compute(x, out):
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        out[...] = 0
        for i in range(spec.r):
            for j in range(spec.s):
                win = xp[:, :, i:i + spec.oh, j:j + spec.ow]
                out += np.einsum("kc,nchw->nkhw", w[:, :, i, j], win)

    return compute


ALGORITHM = convbench.Algorithm(
    name="taps_gemm", family="user", device="cpu", supports=supports, prepare=prepare,
    tolerance={"float32": 2e-5, "float64": 1e-12}, doc="A GEMM per filter tap.")
'''

PLUGIN_PROJECT = '''
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "taps-gemm-plugin"
version = "1.2.3"

[tool.setuptools]
py-modules = ["taps_gemm"]

[project.entry-points."convbench.algorithms"]
taps_gemm = "taps_gemm:ALGORITHM"
broken = "taps_gemm_native:ALGORITHM"
'''


def test_a_plugin_package_is_swept_beside_the_builtins(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "taps_gemm.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    (plugin / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PROJECT))
    fresh_env(tmp_path / "env", parent=True)
    python = tmp_path / "env" / "bin" / "python"
    pip("install", str(plugin), python=python, cwd=tmp_path)

    listed = subprocess.run([str(python), "-m", "convbench", "list"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "taps_gemm" in listed.stdout and "A GEMM per filter tap." in listed.stdout
    warned = listed.stderr.strip().splitlines()
    assert len(warned) == 1 and warned[0].startswith("warning: plugin 'broken'")
    assert "ModuleNotFoundError" in warned[0] and "taps-gemm-plugin 1.2.3" in warned[0]

    ran = subprocess.run([str(python), "-m", "convbench", "run", "sweep", "--preset", "smoke",
                          "--algo", "taps_gemm,direct", "--threads", "1", "--results-dir",
                          "results", "--reports-dir", "reports"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    rows = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    mine = [r for r in rows if r["algorithm"] == "taps_gemm"]
    assert [r["status"] for r in mine] == ["ok", "ok", "unsupported"]  # dw3x3s2: stride 2
    assert all(r["accurate"] for r in mine[:2])
    meta = json.loads((run_dir / "meta.json").read_text())
    origin = {a["name"]: a["origin"] for a in meta["algorithms"]}
    assert origin["direct"] == "convbench"
    assert origin["taps_gemm"].startswith("'taps_gemm' (taps_gemm:ALGORITHM, from "
                                          "taps-gemm-plugin 1.2.3)")
    assert len(meta["plugin_problems"]) == 1
    report = (tmp_path / "reports" / run_dir.name / "report.html").read_text()
    assert "taps_gemm" in report
