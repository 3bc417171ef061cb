"""Charts and the HTML report, from saved runs whose answers are known.  Nothing is compiled.

`make_run` writes a synthetic run: a filter sweep (1, 3, 5, 7 at strides 1 and 2) on which
``direct`` wins the small filters and ``fft`` the large ones at stride 1 (so the winner
changes between filter 3 and 5), ``direct`` wins everything at stride 2, ``winograd_f43`` is
fastest on 3x3 but inaccurate (never a winner), one ``fft`` row failed, and two network layers,
one of them named by a hostile user.
"""

import base64
import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from convbench import analysis, cli, plots, registry, report, runner, store, sweep
from convbench.spec import ConvSpec
from tests import fakes

XSS = "<script>alert(1)</script>"
FILTERS = (1, 3, 5, 7)
PNG = b"\x89PNG\r\n\x1a\n"
MS = 1e-3


def _time(algo: str, r: int, stride: int) -> float | None:
    """Median seconds of the synthetic sweep (None: the algorithm does not support it)."""
    if algo == "direct":
        return 0.1 * r * r / stride**2 * MS
    if algo == "im2col":
        return 1.3 * _time("direct", r, stride)
    if algo == "fft":
        return (1.5 if stride == 1 else 2.0) * MS
    if algo == "winograd_f43":
        return 0.2 * MS if (r, stride) == (3, 1) else None
    if algo == "separable":
        return 0.5 * _time("direct", r, stride)
    raise AssertionError(algo)


def _row(spec: ConvSpec, algo: str, seconds: float | None, **extra) -> dict:
    entry = registry.get(algo)
    row = {**runner.problem_columns(spec), "run_id": "synthetic", "algorithm": algo,
           "family": entry.family, "device": "cpu", "operator": entry.operator, "threads": 1,
           "tolerance": entry.tolerance[spec.dtype], "warnings": "", "reason": ""}
    if seconds is None:
        return {**row, "status": "unsupported", "reason": f"{algo} does not do this"}
    row.update(status="ok", accurate=True, max_abs_err=1e-6, max_rel_err=1e-7, rel_l2_err=5e-8,
               compile_s=0.5, prepare_s=1e-5, median_s=seconds, min_s=0.98 * seconds,
               q1_s=0.99 * seconds, q3_s=1.01 * seconds, std_s=0.01 * seconds, n_values=5,
               loops=10, values_s=[seconds] * 5, gflops=spec.flops / seconds / 1e9,
               workspace_bytes=4096 * spec.r * spec.s, phases_s=_phases(algo, seconds))
    return {**row, **extra}


def _phases(algo: str, seconds: float) -> str:
    """fft's phases: a third of its time multiplies, the rest transforms (so the multiply
    alone always beats direct's loops, and the transforms decide where fft overtakes)."""
    if algo != "fft":
        return ""
    return json.dumps({"input transform": seconds / 3, "multiply": seconds / 3,
                       "output transform": seconds / 3})


def synthetic_rows(layer_name: str = "net:conv2") -> pd.DataFrame:
    rows = []
    for r in FILTERS:
        for stride in (1, 2):
            spec = ConvSpec(c=8, h=16, k=8, r=r, stride=stride, padding="same")
            for algo in ("direct", "im2col", "fft", "winograd_f43", "separable"):
                t = _time(algo, r, stride)
                if algo == "winograd_f43" and t is not None:  # fast, but wrong
                    rows.append(_row(spec, algo, t, accurate=False, max_rel_err=3e-3,
                                     warnings="inaccurate: 3e-03 > 2e-04"))
                elif algo == "fft" and (r, stride) == (7, 2):
                    rows.append({**_row(spec, algo, None), "status": "error",
                                 "reason": "RuntimeError: <b>boom</b>"})
                else:
                    rows.append(_row(spec, algo, t))
    rows[0]["warnings"] = "unstable: std is 20% of the median"
    # Two layers of a network: im2col wins the first, direct the second.
    for spec, times in (
            (ConvSpec(c=3, h=16, k=8, r=3, stride=2, padding=1, name="net:conv1"),
             {"direct": 2.0, "im2col": 1.0}),
            (ConvSpec(c=8, h=8, k=8, r=5, padding=2, name=layer_name, count=3),
             {"direct": 0.5, "im2col": 0.9})):
        for algo, t in times.items():
            rows.append(_row(spec, algo, t * MS))
    return store.rows_frame(rows)


def machine(**changes) -> dict:
    return {
        "versions": {"python": "3.11.7", "numpy": "2.4.6", "numba": "0.68.1"},
        "platform": "Linux-test", "hostname": "testhost", "cpu_model": "Test CPU 9000",
        "cpu_name": "znver5", "cpu_features": ["avx2", "avx512f"], "cores": 2,
        "cores_usable": 2, "memory_bytes": 8 << 30,
        "blas": [{"internal_api": "openblas", "version": "0.3.99", "architecture": "Haswell",
                  "num_threads": 1, "threading_layer": "pthreads",
                  "prefix": "libscipy_openblas"}],
        "blas_warning": "BLAS kernel below this CPU (AVX-512): test warning",
        "load_average": [3.5, 2.0, 1.0],
        "load_warning": "the machine is busy (load average 3.5 on 2 cores): test",
        "env": {"OPENBLAS_CORETYPE": "Haswell"}, "gpu": {"available": False, "reason": "none"},
        "git_commit": "0123456789abcdef", **changes}


def make_run(root: Path, name: str = "synthetic", description: str = "a synthetic sweep",
             layer_name: str = "net:conv2", rows: pd.DataFrame | None = None) -> Path:
    """A run directory as the runner leaves it: rows.parquet and meta.json."""
    run_dir = Path(root) / "20260101-000000-abcd"
    run_dir.mkdir(parents=True)
    store.write_rows(run_dir, synthetic_rows(layer_name) if rows is None else rows)
    store.write_meta(run_dir, {
        "run_id": run_dir.name,
        "config": {"name": name, "description": description, "source": "test",
                   "problems": [{"id": "n1c8h8w8k8r5s5u1p2d1g1", "name": layer_name}]},
        "start": "2026-01-01T00:00:00+0000", "end": "2026-01-01T00:01:30+0000",
        "complete": True, "threads": 2, "blas_threads": 1, "machine": machine()})
    return run_dir


class _Checker(HTMLParser):
    """Every element closed in order; void elements never closed."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.counts, self.problems, self.doctype = [], {}, [], None
        self.images, self.text = [], []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in self.VOID:
            self.problems.append(f"</{tag}> closes a void element")
        elif not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The report of the synthetic run: (run dir, report path, HTML)."""
    root = tmp_path_factory.mktemp("report")
    run_dir = make_run(root / "results")
    path = report.write_report(run_dir, root / "out")
    return run_dir, path, path.read_text(encoding="utf-8")


def text(fragment: str) -> str:
    """The text a reader sees (entities decoded)."""
    return "".join(parse(fragment).text)


def section(html: str, name: str) -> str:
    m = re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)
    assert m, f"no section {name}"
    return m.group(1)


# ---------------------------------------------------------------------------------------------
# The page

def test_report_is_well_formed_html(written):
    _, _, html = written
    checker = parse(html)
    assert checker.doctype and checker.doctype.lower() == "doctype html"
    assert checker.problems == []
    assert checker.stack == []
    assert checker.counts["html"] == 1 and checker.counts["head"] == 1
    assert checker.counts["body"] == 1


def test_report_embeds_the_charts_written_beside_it(written):
    _, path, html = written
    files = sorted(path.parent.glob("*.png"))
    # the synthetic run has something for every chart
    assert {f.name for f in files} == {name for name, _, _ in plots.CHARTS}
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(embedded) == len(files)
    decoded = [base64.b64decode(b, validate=True) for b in embedded]
    assert all(d.startswith(PNG) for d in decoded)
    assert sorted(decoded) == sorted(f.read_bytes() for f in files)


def test_report_needs_nothing_from_outside(written):
    _, _, html = written
    assert "<script" not in html.lower()
    assert not re.search(r'(?:src|href)="(?!data:|#)', html), "only data URIs and anchors"
    assert "@import" not in html and "url(" not in html


def test_sections_come_in_reading_order(written):
    _, _, html = written
    order = ["findings", "charts", "winners", "network", "separable", "rows", "accuracy",
             "environment", "warnings"]
    at = [html.index(f'<section id="{name}">') for name in order]
    assert at == sorted(at)
    assert "<h1>convbench: synthetic</h1>" in html and "a synthetic sweep" in html
    assert "20260101-000000-abcd" in html and "2026-01-01 00:00:00 +0000" in html


def test_findings_state_the_winners_and_the_crossover(written):
    _, _, html = written
    found = text(section(html, "findings"))
    # 10 problems: direct wins 1x1 and 3x3 at stride 1, all four at stride 2, and net:conv2;
    # fft wins 5x5 and 7x7 at stride 1; im2col wins net:conv1.
    assert "direct wins 7 of 10 problems, fft 2, im2col 1." in found
    assert "Stride 1, 8→8 channels, 16x16: direct at filter 1, 3; fft at filter 5, 7." in found
    # the phases: fft's transforms are two thirds of it; its multiply alone beats direct at
    # filter 3 (0.5 / 0.9 ms) and 5 (0.5 / 2.5 ms), so the transforms decide the crossover
    assert "fft: 67% of its time, over 7 problems" in found
    assert ("fft overtakes direct between filter 3 and 5 at stride 1, 8→8 channels, 16x16: "
            "the multiply alone favours fft on both sides (fft's over direct's: 0.56 and "
            "0.20), so the transforms decide where (fft's take 67% and 67% of its time).") \
        in found
    assert "Stride 2, 8→8 channels, 16x16: direct at filter 1–7." in found
    assert "fft overtakes direct between filter 3 and 5 at stride 1" in found
    # the network: best per layer 1.0 + 3 x 0.5 ms; direct alone 2.0 + 1.5 ms (1.40x)
    assert ("net: choosing the fastest algorithm for each layer, the network's 2 layers (4 "
            "with repeats) take 2.50 ms; the fastest single algorithm, direct, takes 3.50 ms "
            "(1.40× the best per layer).") in found
    # 8 grid problems: direct, im2col, separable 8 each, fft 7 (one error), winograd 1;
    # and 4 network rows
    assert "1 of 36 measured results exceed their tolerance" in found
    assert "1 case failed with an error" in found
    assert "1 of 36 measured times carry a timing warning" in found
    assert "Machine: BLAS kernel below this CPU (AVX-512): test warning." in found
    assert "Machine: the machine is busy (load average 3.5 on 2 cores): test." in found


def test_an_inaccurate_result_never_wins_and_is_reported(written):
    _, _, html = written
    winners = section(html, "winners")
    row = re.search(r"<tr><td>n1c8h16w16k8r3s3u1psamed1g1</td>.*?</tr>", winners, re.S).group(0)
    assert "direct" in row and "winograd_f43" not in row
    accuracy = section(html, "accuracy")
    assert "Results above tolerance" in accuracy and "winograd_f43" in accuracy
    assert "3.00e-03" in accuracy


def test_environment_and_warnings(written):
    _, _, html = written
    env = section(html, "environment")
    for needle in ("Test CPU 9000", "openblas, 0.3.99, Haswell kernel", "0123456789abcdef",
                   "BLAS kernel below this CPU (AVX-512): test warning", "numba 0.68.1",
                   "2 Numba threads", "none (none)", "3.50 / 2.00 / 1.00"):
        assert needle in env
    warnings = section(html, "warnings")
    assert "BLAS kernel below this CPU (AVX-512): test warning" in warnings
    assert "the machine is busy (load average 3.5 on 2 cores): test" in warnings
    assert "RuntimeError: &lt;b&gt;boom&lt;/b&gt;" in warnings  # the error row, escaped
    assert "unstable: std is 20% of the median" in warnings
    assert "exceeds tolerance" in warnings


def test_every_row_is_in_the_table(written):
    run_dir, _, html = written
    rows = section(html, "rows")
    n = len(store.load_run(run_dir))
    assert rows.count("<tr") == n + 1  # and the header
    assert rows.count('class="unsupported"') == 7  # winograd_f43 off 3x3 stride 1


def test_user_strings_are_escaped(tmp_path):
    run_dir = make_run(tmp_path / "results", name=XSS, description=f"about {XSS} & more",
                       layer_name=f"net:{XSS}")
    html = report.write_report(run_dir, tmp_path / "out").read_text(encoding="utf-8")
    assert XSS not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "about &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert f"net:{XSS}" in text(html)  # the layer is there, as text


def test_default_out_dir_is_reports_run_id(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    path = report.write_report(run_dir)
    assert path == Path("reports") / run_dir.name / "report.html"
    assert (tmp_path / path).is_file()


def test_a_run_without_results_still_reports(tmp_path):
    full = report.write_report(make_run(tmp_path / "full"), tmp_path / "out")
    assert len(list(full.parent.glob("*.png"))) == len(plots.CHARTS)
    rows = synthetic_rows()
    rows = rows[rows["status"] != "ok"].reset_index(drop=True)
    run_dir = make_run(tmp_path / "results", rows=rows)
    path = report.write_report(run_dir, tmp_path / "out")  # over the full run's report
    html = path.read_text(encoding="utf-8")
    assert "No algorithm produced an accurate, timed result" in html
    assert list(path.parent.glob("*.png")) == []
    assert parse(html).problems == []


def test_a_run_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a convbench run"):
        report.write_report(tmp_path, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# The CLI

@pytest.fixture
def nothing_runs(monkeypatch):
    """Every way to run a kernel raises."""
    def boom(*args, **kwargs):
        raise AssertionError("convbench report ran something")

    monkeypatch.setattr(registry, "REGISTRY", tuple(
        dataclasses.replace(a, prepare=boom) for a in registry.REGISTRY))
    monkeypatch.setattr(runner, "run_case", boom)
    monkeypatch.setattr(runner, "run_sweep", boom)


def test_cli_report_reproduces_the_report_without_running(tmp_path, nothing_runs, capsys):
    run_dir = make_run(tmp_path / "results")
    out = tmp_path / "out"
    assert cli.main(["report", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "fft overtakes direct between filter 3 and 5" in html
    assert {p.name for p in out.glob("*.png")} == {name for name, _, _ in plots.CHARTS}


def test_cli_report_of_a_fake_registry_run(tmp_path, capsys):
    # Rows as the runner writes them, every outcome included (error, inaccurate, skipped).
    cpu = [e for e in fakes.entries() if e.device == "cpu"]
    df = runner.run_sweep(sweep.preset("smoke"), results_dir=tmp_path / "results",
                          entries=cpu, threads=1)
    out = tmp_path / "out"
    assert cli.main(["report", df.attrs["run_dir"], "--out", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert parse(html).problems == []
    assert "RuntimeError: kernel exploded" in section(html, "warnings")
    assert "exceeds the memory budget" in section(html, "rows")


def test_cli_report_of_a_missing_run_is_one_line_and_status_2(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convbench: error:") and "nope" in err[0]
    assert not (tmp_path / "out").exists()


def _fake_sweep(run_dir: Path):
    def run_sweep(*args, **kwargs):
        df = store.load_run(run_dir)
        df.attrs["run_dir"] = str(run_dir)
        return df
    return run_sweep


def test_run_sweep_writes_the_report(tmp_path, monkeypatch, capsys):
    run_dir = make_run(tmp_path / "results")
    monkeypatch.setattr(runner, "run_sweep", _fake_sweep(run_dir))
    reports = tmp_path / "reports"
    assert cli.main(["run", "sweep", "--preset", "smoke", "--results-dir",
                     str(tmp_path / "results"), "--reports-dir", str(reports)]) == 0
    path = reports / run_dir.name / "report.html"
    assert f"report:  {path}" in capsys.readouterr().out.splitlines()
    assert "fft overtakes direct between filter 3 and 5" in path.read_text(encoding="utf-8")


def test_run_sweep_says_how_to_retry_a_failed_report(tmp_path, monkeypatch, capsys):
    run_dir = make_run(tmp_path / "results")
    monkeypatch.setattr(runner, "run_sweep", _fake_sweep(run_dir))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    assert cli.main(["run", "sweep", "--preset", "smoke", "--results-dir",
                     str(tmp_path / "results"), "--reports-dir", str(tmp_path / "r")]) == 1
    out, err = capsys.readouterr()
    assert "winner" in out  # the table of winners is still printed
    assert f"report not written (RuntimeError: disk full); the results are saved, retry " \
           f"with: convbench report {run_dir}" in err


# ---------------------------------------------------------------------------------------------
# Charts

def test_colours_follow_the_registry_and_never_repeat_among_eighteen():
    names = [a.name for a in registry.algorithms()]
    colour = plots.colors(["zzz_fake"])
    palette = plots.palette()
    assert len(set(palette)) == 18 and palette[:10] == list(plt.get_cmap("tab10").colors)
    assert [colour[n] for n in dict.fromkeys(names)] == palette[:len(set(names))]
    assert colour["zzz_fake"] == palette[len(set(names)) % 18]
    assert plots.colors() == {k: v for k, v in colour.items() if k != "zzz_fake"}


def test_charts_with_nothing_to_show_are_not_written(tmp_path):
    rows = synthetic_rows()
    one = rows[rows["problem"] == rows["problem"].iloc[0]]  # a single grid problem
    for chart in (plots.time_vs_filter, plots.gflops_vs_filter, plots.winner_map,
                  plots.network):
        assert chart(one, tmp_path / "x.png") is None, chart.__name__
    assert not (tmp_path / "x.png").exists()
    assert plots.error_vs_filter(one, tmp_path / "e.png") == tmp_path / "e.png"
    assert plots.costs(rows.iloc[0:0], tmp_path / "c.png") is None


def test_charts_are_pngs(tmp_path):
    rows = synthetic_rows()
    for name, chart, _ in plots.CHARTS:
        path = chart(rows, tmp_path / name)
        assert path == tmp_path / name and path.read_bytes().startswith(PNG), name
        img = plt.imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 400, name


def test_crossovers_marked_on_the_panel_they_belong_to():
    rows = synthetic_rows()
    xo = analysis.crossovers(rows)
    key = {"n": 1, "c": 8, "k": 8, "h": 16, "w": 16, "groups": 1, "dilation": "1",
           "padding": "same", "dtype": "float32"}
    mine = plots._crossovers_for(xo, key, (1.0, 1.0))
    assert list(zip(mine["lo"], mine["hi"], mine["before"], mine["after"], strict=True)) == [
        (3, 5, "direct", "fft")]
    assert plots._crossovers_for(xo, key, (2.0, 2.0)).empty
    assert plots._crossovers_for(xo, {**key, "c": 16}, (1.0, 1.0)).empty


def test_simulated_cuda_rows_are_flagged_and_never_win(tmp_path):
    rows = synthetic_rows()
    fastest = rows[rows["status"] == "ok"]["median_s"].min()
    sim = rows[rows["status"] == "ok"].head(1).copy()
    sim["device"], sim["simulated"], sim["median_s"] = "cuda", True, fastest / 100
    rows = pd.concat([rows, sim], ignore_index=True)
    html = report.write_report(make_run(tmp_path, rows=rows), tmp_path / "out").read_text()
    findings = section(html, "findings")
    assert "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)" in findings
    assert "@cuda" not in findings  # a simulated time never wins


# ---------------------------------------------------------------------------------------------
# Against NNPACK's table; accuracy against speed

# (ms, error) per algorithm on three layers of the nnpack-table preset: fft wins AlexNet
# conv3 (as in NNPACK's table), winograd_f43 OverFeat conv3 (as in NNPACK's) and direct
# VGG-A conv1 (NNPACK: im2col + sgemm).
NNPACK_TIMES = {
    "nnpack:alexnet-conv3": {"direct": (4.0, 1e-7), "fft": (1.0, 2e-6),
                             "winograd_f23": (1.5, 5e-7), "winograd_f43": (1.2, 4e-6)},
    "nnpack:overfeat-conv3": {"direct": (4.0, 1e-7), "fft": (2.0, 2e-6),
                              "winograd_f23": (1.6, 5e-7), "winograd_f43": (1.0, 4e-6)},
    "nnpack:vgg-a-conv1": {"direct": (1.0, 1e-7), "im2col": (1.5, 1e-7), "fft": (3.0, 2e-6)},
}


def nnpack_rows() -> pd.DataFrame:
    layers = {p.name: p.with_(n=1) for p in sweep.preset("nnpack-table").problems}
    return store.rows_frame([_row(layers[name], algo, t * MS, max_rel_err=err)
                             for name, times in NNPACK_TIMES.items()
                             for algo, (t, err) in times.items()])


@pytest.fixture(scope="module")
def nnpack_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnpack")
    path = report.write_report(make_run(root / "results", rows=nnpack_rows()), root / "out")
    return path, path.read_text(encoding="utf-8")


def test_nnpack_section_compares_winning_families(nnpack_report):
    _, html = nnpack_report
    assert parse(html).problems == []
    found = text(section(html, "findings"))
    assert ("convbench's winner agrees with NNPACK's on 2 of 3 layers of NNPACK's published "
            "table, compared by family (agreeing: fft on 1, winograd on 1; convbench's direct "
            "(no counterpart in NNPACK's table) where NNPACK's gemm wins: 1 layer)") in found
    table = text(section(html, "nnpack"))
    for needle in ("AlexNet:conv3", "OverFeat:conv3", "VGG-A:conv1", "FFT-16x16",
                   "Winograd F(6x6,3x3)", "im2col + sgemm", "no counterpart in NNPACK"):
        assert needle in table
    assert html.index('<section id="nnpack">') < html.index('<section id="rows">')


def test_frontier_section_finding_and_chart(nnpack_report):
    path, html = nnpack_report
    assert (path.parent / "accuracy_speed.png").read_bytes().startswith(PNG)
    assert "accuracy_speed.png" in section(html, "charts")
    found = text(section(html, "findings"))
    # 3x3, both layers in one group: f23 at 5e-7 (2.67x; its 2.5x is dominated by it), fft
    # at 2e-6 (4x; its 2x is dominated by f23), f43's 4x at 4e-6 by fft's 4x at 2e-6
    assert ("3x3, stride 1: winograd_f23 (error 5.00e-07, 2.67×) → fft (error 2.00e-06, "
            "4.00×).") in found
    frontier = text(section(html, "frontier"))
    assert frontier.count("winograd_f23") == 1 and "winograd_f43" not in frontier
    assert "AlexNet" not in frontier and "nnpack:alexnet-conv3" in frontier


def test_new_sections_only_when_relevant(written, tmp_path):
    _, path, html = written
    assert '<section id="nnpack">' not in html and "NNPACK" not in html
    # the synthetic filter sweep has fft and direct: a frontier, and its chart
    assert '<section id="frontier">' in html and (path.parent / "accuracy_speed.png").exists()
    rows = synthetic_rows()
    rows = rows[~rows["family"].isin(analysis.FAST_FAMILIES)].reset_index(drop=True)
    out = report.write_report(make_run(tmp_path / "results", rows=rows), tmp_path / "out")
    plain = out.read_text(encoding="utf-8")
    assert '<section id="frontier">' not in plain and "accuracy-speed" not in plain.lower()
    assert not (out.parent / "accuracy_speed.png").exists()
    assert plots.accuracy_speed(rows, tmp_path / "x.png") is None


def test_nnpack_verdict_tied_when_the_published_family_is_within_noise(tmp_path):
    rows = nnpack_rows()
    fft = (rows["name"] == "nnpack:overfeat-conv3") & (rows["algorithm"] == "fft")
    rows.loc[fft, ["median_s", "q1_s", "q3_s"]] = 0.999 * MS  # beats F(4,3)'s 1 ms by 0.1 %
    html = report.write_report(make_run(tmp_path / "results", rows=rows),
                               tmp_path / "out").read_text(encoding="utf-8")
    found = text(section(html, "findings"))
    assert ("convbench's fft where NNPACK's winograd wins: 1 layer, 1 of them tied with "
            "winograd within noise") in found
    assert "so 2 of 3 agree within noise" in found
    table = section(html, "nnpack")
    row = re.search(r"<tr><td>nnpack:overfeat-conv3</td>.*?</tr>", table, re.S).group(0)
    assert ">tied<" in row


def test_nnpack_layers_without_a_result_have_no_verdict(tmp_path):
    rows = nnpack_rows()
    rows.loc[rows["name"] == "nnpack:vgg-a-conv1", "accurate"] = False
    html = report.write_report(make_run(tmp_path / "results", rows=rows),
                               tmp_path / "out").read_text(encoding="utf-8")
    found = text(section(html, "findings"))
    assert "agrees with NNPACK's on 2 of 2 layers" in found  # vgg-a-conv1 is not counted
    table = section(html, "nnpack")
    row = re.search(r"<tr><td>nnpack:vgg-a-conv1</td>.*?</tr>", table, re.S).group(0)
    assert "none" in row and ">yes<" not in row and ">no<" not in row
    rows["status"] = "error"
    html = report.write_report(make_run(tmp_path / "again", rows=rows),
                               tmp_path / "out2").read_text(encoding="utf-8")
    assert ("None of the 3 layers of NNPACK's table in this run has an accurate CPU result"
            in text(section(html, "findings")))
