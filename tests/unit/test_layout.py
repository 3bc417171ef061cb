"""The repository's rules that a reader relies on: kernels never import the harness, and the
repository explains itself without files outside it."""

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HARNESS_ONLY = ("convbench", "pandas", "matplotlib", "jinja2", "tqdm")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_kernels_never_import_the_harness():
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top not in HARNESS_ONLY, f"{path.relative_to(ROOT)} imports {name}"


def test_the_harness_imports_kernels_through_the_registry_and_its_two_exceptions():
    allowed = {"convbench_kernels.reference", "convbench_kernels.cpu.common"}
    for path in sorted((ROOT / "convbench").rglob("*.py")):
        if path.name == "registry.py":
            continue
        kernels = {n for n in imported_modules(path) if n.startswith("convbench_kernels")}
        assert kernels <= allowed, f"{path.relative_to(ROOT)} imports {kernels - allowed}"


def test_nothing_cites_files_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode:  # not a git checkout (an unpacked source archive): read the tree
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    else:
        files = [ROOT / f for f in tracked.stdout.splitlines()]
    for path in files:
        if path.suffix not in (".py", ".md", ".toml", ".j2", ".txt") and path.name != "run":
            continue
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        for needle in ("DESIGN" ".md", "../" "shared"):
            assert needle not in text, f"{path.relative_to(ROOT)} cites {needle}"
