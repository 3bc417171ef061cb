"""The report in a real browser: headless Chromium renders it, charts included.

Needs a ``chromium`` binary (Debian: ``apt-get install -y chromium``); skipped, with that
reason, only when there is none.
"""

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from convbench import plots, report
from tests.unit.test_report import make_run


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
# CI installs Chromium (.ci/run), so there a missing binary is a failure, not a skip
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no chromium binary on this machine (apt-get install -y chromium)")
WIDTH, HEIGHT = 1280, 2000


def screenshot(page: Path, shot: Path, profile: Path) -> subprocess.CompletedProcess:
    # Offline and quiet: no first-run screens, no background fetches, no GPU.  --no-sandbox
    # because CI runs as root, where Chromium's sandbox refuses to start.
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
         f"--window-size={WIDTH},{HEIGHT}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=False)


def near(rgb: np.ndarray, colour, tol: float = 8 / 255) -> int:
    """How many pixels are within ``tol`` of ``colour`` in every channel."""
    return int((np.abs(rgb - np.asarray(colour[:3])) <= tol).all(axis=-1).sum())


def test_report_renders_in_chromium(tmp_path):
    assert CHROMIUM, "no chromium binary: .ci/run installs Debian's chromium"
    page = report.write_report(make_run(tmp_path / "results"), tmp_path / "out")
    shot = tmp_path / "shot.png"
    proc = screenshot(page, shot, tmp_path / "profile")
    assert shot.is_file(), f"no screenshot; chromium said:\n{proc.stderr[-3000:]}"
    img = plt.imread(shot)  # floats in [0, 1]
    assert img.shape[:2] == (HEIGHT, WIDTH)
    rgb = img[..., :3]
    # Not blank: the page has text, tables and charts on white.
    assert rgb.std() > 0.05
    assert len(np.unique((rgb.reshape(-1, 3) * 255).round(), axis=0)) > 100
    # The embedded charts were decoded and drawn: their lines and cells show the algorithms'
    # colours (the page's own blue, #1f5fa8, is far from any of them).
    colour = plots.colors()
    for algo in ("direct", "fft"):
        assert near(rgb, colour[algo]) > 200, f"no {algo} pixels: charts not rendered"
