"""The README's Python examples run as written."""

import re
from pathlib import Path

from convbench import registry

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) == 2


def test_the_api_example_runs(capsys):
    exec(compile(BLOCKS[1], "README.md", "exec"), {})
    assert "n1c64h56w56k64r3s3u1p1d1g1" in capsys.readouterr().out


def test_the_register_example_sweeps_its_algorithm_beside_the_builtins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_USER", [])
    scope = {}
    exec(compile(BLOCKS[0], "README.md", "exec"), scope)
    rows = scope["rows"]
    mine = rows[rows["algorithm"] == "scipy_nd"]
    assert len(mine) == 2 and (mine["status"] == "ok").all() and mine["accurate"].all()
    assert {"direct", "im2col", "fft"} <= set(rows["algorithm"])
