"""Charts of a run's rows, as PNG files: one question per chart.  Runs nothing.

Each chart function takes the rows DataFrame (`convbench.store.COLUMNS`) and a path, writes a
PNG there and returns the path, or returns None when the run holds nothing the chart can show
(a network chart for a filter sweep, a filter chart for a single layer).

Every chart colours an algorithm the same way (`colors`: the registry's order mapped onto
matplotlib's ``tab10``, then ``Dark2``), so that a reader learns the colours once.  Rows of
the separable operator compute a different function from the standard convolution: they are
drawn dashed (or hatched) and never counted as winners.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    LogFormatterSciNotation,
    LogLocator,
    NullLocator,
)

from . import analysis, registry  # noqa: E402
from . import phases as phase_table  # noqa: E402
from . import roofline as rl  # noqa: E402

DPI = 110
# One look for every chart: fonts a person reads without zooming, light grids, no top/right
# frame.
STYLE = {
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "figure.titlesize": 15,
    "xtick.labelsize": 11, "ytick.labelsize": 11, "legend.fontsize": 11,
    "axes.grid": True, "grid.alpha": 0.35, "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": DPI, "savefig.facecolor": "white", "figure.facecolor": "white",
}
MIN_ERR = 1e-10  # exact results (error 0) are drawn here on the log axis
# Inches.  Every chart is about this wide with its legend (wider only when its panels need
# it), so that the report, which fits them all to one column, shows their text at one size.
WIDTH = 12.5


def palette() -> list[tuple]:
    """Eighteen colours told apart: ``tab10``, then ``Dark2``."""
    return [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors]


def colors(names=()) -> dict[str, tuple]:
    """A fixed colour per algorithm name: the registry's order on `palette`.

    Names outside the registry (an old run, a test's fake entries) continue the cycle in the
    order given, so that they are still told apart.
    """
    order = list(dict.fromkeys(a.name for a in registry.algorithms()))
    order += [n for n in dict.fromkeys(names) if n not in order]
    colours = palette()
    return {name: colours[i % len(colours)] for i, name in enumerate(order)}



def algorithm_order(names) -> list[str]:
    """``names`` (unique) in registry order, unknown names last in their given order."""
    rank = {n: i for i, n in enumerate(colors(names))}
    return sorted(dict.fromkeys(names), key=rank.__getitem__)


@contextmanager
def _figure(*args, **kwargs):
    with plt.rc_context(STYLE):
        fig = plt.figure(*args, **kwargs)
        try:
            yield fig
        finally:
            plt.close(fig)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # bbox "tight" keeps legends placed outside the axes inside the image.
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)
    return path


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Measured rows, with plain float columns for plotting."""
    if df.empty:
        return df
    ok = df[(df["status"] == "ok") & df["median_s"].notna()].copy()
    for col in ("median_s", "gflops", "max_rel_err", "tolerance", "compile_s",
                "workspace_bytes", "r", "s", "sh", "sw"):
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce").astype(float)
    ok["median_ms"] = ok["median_s"] * 1e3
    ok["name"] = ok["name"].fillna("").astype(str)
    ok["operator"] = ok["operator"].fillna("conv").astype(str)
    ok["accurate"] = ok["accurate"].fillna(False).astype(bool)
    return ok


def _series(rows: pd.DataFrame):
    """(label, algorithm, operator, device, rows) per algorithm and device, registry order."""
    keys = rows[["algorithm", "device"]].drop_duplicates().itertuples(index=False)
    order = algorithm_order(rows["algorithm"])
    for algo, device in sorted(keys, key=lambda k: (order.index(k[0]), k[1])):
        g = rows[(rows["algorithm"] == algo) & (rows["device"] == device)]
        yield analysis.label(algo, device), algo, g["operator"].iloc[0], device, g


def _line_style(operator: str, device: str) -> dict:
    if operator != "conv":  # a different function: compared, not ranked
        return {"linestyle": (0, (5, 3)), "marker": "o", "markerfacecolor": "white"}
    return {"linestyle": "-" if device == "cpu" else "-.", "marker": "o"}


def _stride_label(sh, sw) -> str:
    return f"stride {int(sh)}" if sh == sw else f"stride {int(sh)}x{int(sw)}"


def _context_label(key: dict) -> str:
    text = (f"{key['c']}\u2192{key['k']} channels, {key['h']}\u00d7{key['w']} input, "
            f"batch {key['n']}, {key['dtype']}")
    if key["groups"] != 1:
        text += f", groups {key['groups']}"
    if (key["dh"], key["dw"]) != (1, 1):
        text += (f", dilation {key['dh']}" if key["dh"] == key["dw"]
                 else f", dilation {key['dh']}x{key['dw']}")
    return text + f", padding {key['padding']}"


def _contexts(ok: pd.DataFrame):
    """(context dict, rows) for each context with at least two square filter sizes."""
    sq = ok[ok["r"] == ok["s"]]
    if sq.empty:
        return []
    out = []
    for key, g in sq.groupby(list(analysis.CONTEXT), sort=False, dropna=False):
        if g["r"].nunique() >= 2:
            out.append((dict(zip(analysis.CONTEXT, key, strict=True)), g))
    return out


def _strides(rows: pd.DataFrame) -> list[tuple]:
    return sorted(rows[["sh", "sw"]].drop_duplicates().itertuples(index=False, name=None))


class _PlainLog(LogFormatterSciNotation):
    """Log-axis labels as plain numbers (0.02, 5, 300), on the ticks matplotlib would label:
    a reader of milliseconds should not have to decode 2×10⁻²."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _plain_log(axis) -> None:
    axis.set_major_formatter(_PlainLog())
    axis.set_minor_formatter(_PlainLog(labelOnlyBase=False))


def _filter_axis(ax, sizes):
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{int(s)}" for s in sizes])
    ax.set_xlabel("filter size r = s")


def _crossovers_for(xo: pd.DataFrame, key: dict, stride: tuple) -> pd.DataFrame:
    """The crossovers on the filter-size axis that belong to one panel.

    A crossover row names the fields it holds fixed; those present (and not missing) must
    equal the panel's.
    """
    if xo is None or xo.empty:
        return xo.iloc[0:0] if xo is not None else pd.DataFrame()
    want = {**key, "sh": stride[0], "sw": stride[1]}
    # Only where the winner of the problem changes: every pair of algorithms crosses
    # somewhere, and a band per pair would bury the answer.
    mask = (xo["axis"] == "r") & xo["winner_changed"].fillna(False).astype(bool)
    for col, v in want.items():
        if col in xo:
            mask &= xo[col].isna() | xo[col].map(lambda x, v=v: _same(x, v)).astype(bool)
    return xo[mask]


def _same(a, b) -> bool:
    """Equal as numbers when both are numbers (1 == 1.0), else as text."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _mark_crossovers(ax, xo: pd.DataFrame) -> None:
    """A grey band over each interval where the winner changes, labelled "before → after"
    (several changes over one interval share the band and stack their labels)."""
    for (lo, hi), g in xo.groupby(["lo", "hi"], sort=True):
        inset = 0.03 * (float(hi) - float(lo))  # adjacent bands stay apart
        ax.axvspan(float(lo) + inset, float(hi) - inset, color="0.9", zorder=0, linewidth=0)
        pairs = zip(g["before"], g["after"], strict=True)
        text = "\n".join(dict.fromkeys(f"{b} \u2192 {a}" for b, a in pairs))
        ax.text((float(lo) + float(hi)) / 2, 0.03, text, rotation=90, fontsize=10, color="0.15",
                transform=ax.get_xaxis_transform(), ha="center", va="bottom", zorder=6,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.75,
                      "linewidth": 0})


def _against_filter(df: pd.DataFrame, path, *, value: str, ylabel: str, title: str,
                    log: bool, crossovers: bool, operators=("conv", "separable")) -> Path | None:
    ok = _ok(df)
    if not ok.empty:
        ok = ok[ok["operator"].isin(operators)]
    if ok.empty:
        return None
    contexts = _contexts(ok)
    if not contexts:
        return None
    xo = None
    if crossovers:
        xo = analysis.crossovers(df)
    ncols = max(len(_strides(g)) for _, g in contexts)
    colour = colors(ok["algorithm"])
    with _figure(figsize=(max(WIDTH - 2.4, 4.4 * ncols), 4.3 * len(contexts) + 0.9)) as fig:
        # Panels of one context share a y scale, to compare strides by eye.
        axes = fig.subplots(len(contexts), ncols, squeeze=False, sharex=True, sharey="row")
        handles: dict[str, Line2D] = {}
        for row, (key, rows) in enumerate(contexts):
            sizes = sorted(rows["r"].unique())
            strides = _strides(rows)
            for col in range(ncols):
                ax = axes[row][col]
                if col >= len(strides):
                    ax.set_visible(False)
                    continue
                stride = strides[col]
                panel = rows[(rows["sh"] == stride[0]) & (rows["sw"] == stride[1])]
                for label, algo, operator, device, g in _series(panel):
                    g = g.sort_values("r")
                    (line,) = ax.plot(g["r"], g[value], color=colour[algo], linewidth=2,
                                      markersize=5, label=label, **_line_style(operator, device))
                    handles.setdefault(label, line)
                    bad = g[~g["accurate"]]
                    if len(bad):
                        ax.plot(bad["r"], bad[value], "x", color="black", markersize=9,
                                markeredgewidth=2, zorder=5)
                        handles.setdefault("inaccurate (not ranked)", Line2D(
                            [], [], marker="x", color="black", linestyle="none",
                            markersize=9, markeredgewidth=2))
                if log:
                    ax.set_yscale("log")
                    _plain_log(ax.yaxis)
                if xo is not None:
                    mine = _crossovers_for(xo, key, stride)
                    _mark_crossovers(ax, mine)
                    if len(mine):
                        handles.setdefault("winner changes", Patch(color="0.9"))
                _filter_axis(ax, sizes)
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_title(_stride_label(*stride) + (
                    f"\n{_context_label(key)}" if len(contexts) > 1 else ""), fontsize=11)
                if col == 0:
                    ax.set_ylabel(ylabel)
                else:
                    ax.yaxis.set_tick_params(labelleft=True)
        subtitle = _context_label(contexts[0][0]) if len(contexts) == 1 else ""
        fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), x=0.02, ha="left")
        fig.legend(handles.values(), handles.keys(), loc="upper left",
                   bbox_to_anchor=(1.0, 0.9), frameon=False, title="algorithm")
        fig.tight_layout()
        return _save(fig, path)


def time_vs_filter(df: pd.DataFrame, path) -> Path | None:
    """Median time against filter size, one line per algorithm, one panel per stride.

    Only square-filter problems; one row of panels per context (channels, size, ...) with at
    least two filter sizes.  The bands mark where the winner changes
    (`convbench.analysis.crossovers` on the ``r`` axis) and say which algorithm takes over.
    """
    return _against_filter(
        df, path, value="median_ms", ylabel="median time per call (ms, log scale)",
        title="Which algorithm is fastest at each filter size?  (lower is better)",
        log=True, crossovers=True) if _has_rows(df) else None


def gflops_vs_filter(df: pd.DataFrame, path) -> Path | None:
    """Effective GFLOP/s (direct-method FLOPs over time) against filter size.

    Standard convolutions only: the separable operator does a fraction of the direct
    method's FLOPs, so its "effective" rate against them would dwarf every other line.
    """
    return _against_filter(
        df, path, value="gflops", ylabel="effective GFLOP/s (direct-method FLOPs / time)",
        title="How fast does each algorithm compute?  (higher is better)",
        log=False, crossovers=False, operators=("conv",)) if _has_rows(df) else None


def _has_rows(df: pd.DataFrame) -> bool:
    return not df.empty and "median_s" in df


def error_vs_filter(df: pd.DataFrame, path) -> Path | None:
    """The worst error (``max_rel_err``) of each algorithm at each filter size, log scale,
    with each algorithm's tolerance as a dashed line of its colour; one panel per dtype.

    Every measured row counts (grid problems and network layers alike); an exact result is
    drawn at `MIN_ERR`.
    """
    ok = _ok(df) if _has_rows(df) else pd.DataFrame()
    if ok.empty or ok["max_rel_err"].notna().sum() == 0:
        return None
    ok = ok[ok["max_rel_err"].notna()]
    dtypes = sorted(ok["dtype"].astype(str).unique())
    colour = colors(ok["algorithm"])
    with _figure(figsize=(max(WIDTH - 3.2, 5.5 * len(dtypes)), 4.8)) as fig:
        axes = fig.subplots(1, len(dtypes), squeeze=False)[0]
        handles: dict[str, object] = {}
        for ax, dtype in zip(axes, dtypes, strict=True):
            rows = ok[ok["dtype"].astype(str) == dtype]
            series = list(_series(rows))
            sizes = sorted(rows["r"].unique())
            # Algorithms often agree to the last bit (direct and im2col sum in the same
            # order): a small sideways shift per algorithm keeps coinciding points visible.
            step = min(np.diff(sizes), default=1.0)
            shift = 0.025 * step
            for i, (label, algo, operator, device, g) in enumerate(series):
                worst = g.groupby("r")["max_rel_err"].max().clip(lower=MIN_ERR)
                x = worst.index + (i - (len(series) - 1) / 2) * shift
                (line,) = ax.plot(x, worst.values, color=colour[algo], linewidth=2,
                                  markersize=5, label=label, **_line_style(operator, device))
                handles.setdefault(label, line)
            _tolerances(ax, rows, colour)
            ax.set_yscale("log")
            _filter_axis(ax, sizes)
            ax.set_xlim(min(sizes) - 0.7, max(sizes) + 0.7)
            ax.set_ylabel("worst max|error| / max|reference| (log scale)")
            ax.set_title(f"{dtype}", fontsize=11)
        handles["tolerance (dashed, own colour)"] = Line2D([], [], color="0.3", linewidth=1.4,
                                                          linestyle=(0, (4, 3)))
        fig.suptitle("How accurate is each algorithm?  Worst error at each filter size, against "
                     "its tolerance", x=0.02, ha="left")
        fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.9),
                   frameon=False, title="algorithm")
        fig.tight_layout()
        return _save(fig, path)


def _tolerances(ax, rows: pd.DataFrame, colour: dict) -> None:
    """One dashed line per tolerance; algorithms that share a tolerance share its line in
    interleaved dashes, so that every colour shows."""
    tol = rows[rows["tolerance"].notna()].groupby("tolerance", sort=True)["algorithm"]
    for value, algos in tol:
        algos = algorithm_order(algos)
        n = len(algos)
        for i, algo in enumerate(algos):
            ax.axhline(value, color=colour[algo], linewidth=1.6,
                       linestyle=(6 * i, (6, 6 * (n - 1) + 3)))


def _text_color(rgb) -> str:
    r, g, b = to_rgb(rgb)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def winner_map(df: pd.DataFrame, path) -> Path | None:
    """Filter size by stride, each cell coloured and labelled by the winning algorithm, with
    its lead over the runner-up; one map per context that sweeps at least two filter sizes."""
    if not _has_rows(df):
        return None
    win = analysis.winners(df)
    if win.empty:
        return None
    win = win.copy()
    for col in ("r", "s", "sh", "sw"):
        win[col] = pd.to_numeric(win[col]).astype(int)
    win = win[win["r"] == win["s"]]
    # The context of a winner row: the problem's fields from the rows (analysis keeps most).
    fields = df.drop_duplicates(subset=["problem", "name"])[["problem", "name",
                                                             *analysis.CONTEXT]]
    win = win.drop(columns=[c for c in analysis.CONTEXT if c in win]).merge(
        fields, on=["problem", "name"])
    maps = []
    for key, g in win.groupby(list(analysis.CONTEXT), sort=False, dropna=False):
        if g["r"].nunique() >= 2:  # a filter sweep; single layers are the network chart's
            maps.append((dict(zip(analysis.CONTEXT, key, strict=True)), g))
    if not maps:
        return None
    colour = colors(win["winner"].map(analysis.algorithm_of))
    names = list(dict.fromkeys(win["winner"]))
    cmap = ListedColormap([colour[analysis.algorithm_of(n)] for n in names] + [(0.93, 0.93, 0.93)])
    blank = len(names)
    width = max(len(sorted(g["r"].unique())) for _, g in maps)
    height = sum(len(_strides(g)) for _, g in maps)
    with _figure(figsize=(max(WIDTH, 1.25 * width + 2.0), 1.0 * height + 1.3 * len(maps) + 0.6)) \
            as fig:
        axes = fig.subplots(len(maps), 1, squeeze=False,
                            height_ratios=[len(_strides(g)) for _, g in maps])[:, 0]
        for ax, (key, g) in zip(axes, maps, strict=True):
            sizes = sorted(g["r"].unique())
            strides = _strides(g)
            grid = np.full((len(strides), len(sizes)), blank)
            ax.grid(False)
            for _, w in g.iterrows():
                i, j = strides.index((w["sh"], w["sw"])), sizes.index(w["r"])
                grid[i, j] = names.index(w["winner"])
                ratio = w.get("runner_up_ratio")
                if w.get("ties"):  # within noise of the winner: say so, not "ahead"
                    lead = f"\ntied: {w['ties']}"
                elif pd.notna(ratio) and w.get("runner_up"):
                    lead = f"\n{_times(ratio)} ahead"
                else:
                    lead = "\nonly one ran"
                ax.text(j, i, f"{w['winner']}{lead}", ha="center", va="center", fontsize=11,
                        color=_text_color(colour[analysis.algorithm_of(w["winner"])]))
            ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=blank + 0.5, aspect="auto")
            for i, j in zip(*np.nonzero(grid == blank), strict=True):
                ax.text(j, i, "no winner", ha="center", va="center", fontsize=11, color="0.4")
            ax.set_xticks(range(len(sizes)), [f"{s}\u00d7{s}" for s in sizes])
            ax.set_yticks(range(len(strides)), [_stride_label(*s) for s in strides])
            ax.set_xticks(np.arange(len(sizes) + 1) - 0.5, minor=True)
            ax.set_yticks(np.arange(len(strides) + 1) - 0.5, minor=True)
            ax.grid(which="minor", color="white", linewidth=2)
            ax.tick_params(which="minor", length=0)
            for side in ("left", "bottom"):
                ax.spines[side].set_visible(False)
            ax.set_xlabel("filter size")
            ax.set_title(_context_label(key), fontsize=10, loc="left")
        fig.suptitle("Which algorithm wins at each filter size and stride?", x=0.02, ha="left")
        fig.tight_layout()
        return _save(fig, path)


def _times(ratio: float) -> str:
    return f"{ratio:.2f}\u00d7" if ratio < 10 else f"{ratio:.0f}\u00d7"



def network(df: pd.DataFrame, path) -> Path | None:
    """Layers of networks (rows named ``net:layer``): each algorithm's time per layer as
    grouped horizontal bars (log scale), the winner marked with a star."""
    ok = _ok(df) if _has_rows(df) else pd.DataFrame()
    if ok.empty:
        return None
    # The network's layers as analysis counts them (comparisons such as MobileNet's
    # conv_std_<i> are not layers), each with its winner.
    summary, _ = analysis.network_summary(df)
    if summary.empty:
        return None
    layers = list(summary[["problem", "name"]].itertuples(index=False, name=None))
    winner = dict(zip(layers, summary["winner"], strict=True))
    networks = list(dict.fromkeys(summary["network"]))
    ok = ok.merge(summary[["problem", "name"]], on=["problem", "name"])
    if ok.empty:
        return None
    series = [(label, algo, device) for label, algo, _, device, _ in _series(ok)]
    colour = colors(ok["algorithm"])
    most = ok.groupby(["problem", "name"]).size().max()
    with _figure(figsize=(WIDTH, 0.9 + len(layers) * (0.2 * most + 0.25))) as fig:
        ax = fig.subplots()
        ax.grid(axis="y", visible=False)
        labels = []
        for i, (problem, name) in enumerate(layers):
            rows = ok[(ok["problem"] == problem) & (ok["name"] == name)]
            first = df[(df["problem"] == problem) & (df["name"] == name)].iloc[0]
            short = name.split(":", 1)[1] if len(networks) == 1 else name
            labels.append(f"{short}\n{analysis.shape_label(first)}")
            # Only the algorithms that ran on this layer get a bar: colours name them, and
            # empty slots would read as missing data.
            present = [(algo, device) for _, algo, device in series
                       if ((rows["algorithm"] == algo) & (rows["device"] == device)).any()]
            bar = 0.8 / max(len(present), 1)
            for j, (algo, device) in enumerate(present):
                r = rows[(rows["algorithm"] == algo) & (rows["device"] == device)].iloc[0]
                y = i - 0.4 + bar * (j + 0.5)
                ax.barh(y, r["median_ms"], height=bar * 0.92, color=colour[algo],
                        hatch="///" if r["operator"] != "conv" else None,
                        edgecolor="white" if r["operator"] != "conv" else None, linewidth=0)
                if winner.get((problem, name)) == analysis.label(algo, device):
                    ax.plot(r["median_ms"] * 1.08, y, marker="*", color="black",
                            markersize=11, linestyle="none")
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.set_yticks(range(len(layers)), labels, fontsize=9)
        ax.set_ylim(len(layers) - 0.5, -0.5)  # first layer on top
        ax.set_xlabel("median time per call (ms, log scale; shorter is faster)")
        if len(layers) > 6:  # a tall chart: the scale at the top too
            ax.tick_params(axis="x", labeltop=True, top=True)
        handles = [Patch(color=colour[algo], label=label) for label, algo, _ in series]
        if (ok["operator"] != "conv").any():
            handles.append(Patch(facecolor="0.6", hatch="///", edgecolor="white",
                                 label="different operator (not ranked)"))
        handles.append(Line2D([], [], marker="*", color="black", linestyle="none",
                              markersize=11, label="fastest for the layer"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title="algorithm")
        ax.set_title("Which algorithm is fastest for each layer"
                     + (f" of {networks[0]}?" if len(networks) == 1 else "?"),
                     loc="left", fontsize=15)
        fig.tight_layout()
        return _save(fig, path)


def _bytes(v, _pos=None) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} B"


def _byte_ticks(ax, values) -> None:
    """Ticks at powers of 4, 16, ... bytes (1 KiB, 4 KiB, 16 KiB): round numbers in binary
    units, about six of them whatever the range."""
    if not values:
        return
    span = np.log2(max(values)) - np.log2(min(values)) + 4
    base = 2 ** max(2, 2 * int(np.ceil(span / 12)))
    ax.xaxis.set_major_locator(LogLocator(base=base, subs=(1.0,)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(_bytes))


def costs(df: pd.DataFrame, path) -> Path | None:
    """Two bar panels per algorithm: compile time (largest first-call cost in the run) and
    workspace (largest allocation beyond input and output)."""
    ok = _ok(df) if _has_rows(df) else pd.DataFrame()
    if ok.empty:
        return None
    series = list(_series(ok))
    colour = colors(ok["algorithm"])
    labels = [s[0] for s in series]
    compile_s = [g["compile_s"].max() for *_, g in series]
    workspace = [g["workspace_bytes"].max() for *_, g in series]
    with _figure(figsize=(WIDTH, 0.6 + 0.42 * len(series) + 1.0)) as fig:
        left, right = fig.subplots(1, 2, sharey=True)
        y = np.arange(len(series))
        bar_colours = [colour[s[1]] for s in series]
        for ax, values, fmt, xlabel, title in (
                (left, compile_s, lambda v: f"{v:.2f} s", "seconds",
                 "Compile time (largest first-call cost)"),
                (right, workspace, _bytes, "bytes (log scale)",
                 "Workspace (largest extra allocation)")):
            vals = np.nan_to_num(np.asarray(values, dtype=float))
            ax.barh(y, vals, color=bar_colours, height=0.7)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel(xlabel)
            ax.set_title(title, loc="left", fontsize=11)
            for yi, v in zip(y, vals, strict=True):
                ax.text(v, yi, " " + fmt(v), va="center", fontsize=10)
            ax.margins(x=0.25)
        positive = [v for v in workspace if pd.notna(v) and v > 0]
        if positive:  # a run whose rows allocate nothing (baselines only) has no log scale
            right.set_xscale("log", base=2)
            _byte_ticks(right, positive)
        left.set_yticks(y, labels)
        left.set_ylim(len(series) - 0.5, -0.5)
        fig.suptitle("What does each algorithm cost besides run time?", x=0.02, ha="left")
        fig.tight_layout()
        return _save(fig, path)


def phases(df: pd.DataFrame, path) -> Path | None:
    """Where each call's time goes: per algorithm with phases, one stacked bar per problem of
    each phase's share (`convbench.phases.phase_times`), problems by context, stride and
    filter size; the call's time above each bar."""
    t = phase_table.phase_times(df) if _has_rows(df) else pd.DataFrame()
    if t.empty:
        return None
    t = t.assign(order_key=[tuple(str(v) for v in k) for k in zip(
        *(t[f] for f in ("c", "k", "h", "w", "n", "groups", "dtype")), strict=True)])
    labels = algorithm_order(t["algorithm"])
    panels = [(lab, g) for a in labels for lab, g in t[t["algorithm"] == a].groupby(
        "label", sort=True)]
    names = list(dict.fromkeys(t.sort_values("order")["phase"]))
    palette = dict(zip(names, plt.get_cmap("Set2").colors, strict=False))
    width = max(g["problem"].nunique() for _, g in panels)
    with _figure(figsize=(max(WIDTH, 0.55 * width + 3.5), 2.6 * len(panels) + 1.2)) as fig:
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (lab, g) in zip(axes, panels, strict=True):
            g = g.sort_values(["order_key", "sh", "sw", "r", "s", "problem", "order"])
            problems = list(dict.fromkeys(g["problem"]))
            x = np.arange(len(problems))
            bottom = np.zeros(len(problems))
            for phase in names:
                part = g[g["phase"] == phase].set_index("problem")["share"]
                share = np.array([100 * part.get(p, 0.0) for p in problems])
                ax.bar(x, share, bottom=bottom, color=palette[phase], width=0.75, label=phase)
                bottom += share
            first = g.drop_duplicates("problem").set_index("problem")
            for xi, p in zip(x, problems, strict=True):
                ax.text(xi, 101, f"{first.loc[p, 'median_s'] * 1e3:.3g} ms", ha="center",
                        va="bottom", fontsize=8)
            ax.set_xticks(x, [analysis.shape_label(first.loc[p]) for p in problems],
                          rotation=30, ha="right", fontsize=9)
            ax.set_ylim(0, 112)
            ax.set_ylabel("% of the call")
            ax.set_title(lab, loc="left", fontsize=11)
            ax.grid(axis="x", visible=False)
        handles = [Patch(color=palette[n], label=n) for n in names]
        fig.legend(handles=handles, loc="upper right", ncols=min(len(names), 5), frameon=False)
        fig.suptitle("Where does each call's time go? (each phase timed alone)", x=0.02,
                     ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        return _save(fig, path)


def roofline(df: pd.DataFrame, path, roof=None) -> Path | None:
    """Each measured row under the machine's roofline: log-log, FLOP/byte against GFLOP/s.

    The roofs are float32's: ``min(peak, intensity x bandwidth)`` per memory level (DRAM, L3,
    L2), from the run's `convbench.roofline.Roofline` (``meta["roofline"]``); float64's peak
    is a dashed line when float64 rows exist.  One point per (problem, algorithm) row, in its
    algorithm's colour: x its intensity (`convbench.roofline.bytes_moved`), y the FLOPs it
    computes per second (direct-method FLOPs: Winograd and FFT may sit above the peak; the
    separable operator, hollow, at the FLOPs it does).  A point's distance below the roof of
    its level is what the algorithm leaves on the table; a point above the roof of its level
    moves fewer bytes than `convbench.roofline.bytes_moved` counts (the workspace estimate is
    an upper bound) or finds its data in a nearer cache.  None without a roofline or rows
    carrying the roofline columns (runs before they existed, CUDA-only runs).
    """
    if roof is None or not _has_rows(df) or "intensity" not in df:
        return None
    try:
        roof = roof if isinstance(roof, rl.Roofline) else rl.Roofline.from_dict(roof)
    except ValueError:  # a run whose measurement failed records the error instead
        return None
    ok = _ok(df)
    if ok.empty:
        return None
    for col in ("intensity", "peak_fraction"):
        ok[col] = pd.to_numeric(ok[col], errors="coerce").astype(float)
    ok = ok[(ok["intensity"] > 0) & (ok["peak_fraction"] > 0)]
    if ok.empty:
        return None
    ok = ok.assign(rate=[f * roof.peak_gflops.get(str(d), np.nan)
                         for f, d in zip(ok["peak_fraction"], ok["dtype"], strict=True)])
    colour = colors(ok["algorithm"])
    peak = roof.peak_gflops.get("float32") or max(roof.peak_gflops.values())
    ridge = peak / min(roof.bandwidth_gbs.values())  # the right-most ridge point (DRAM's)
    x_lo = min(ok["intensity"].min(), 0.1) / 2
    x_hi = max(ok["intensity"].max() * 3, ridge * 8)
    xs = np.geomspace(x_lo, x_hi, 400)
    with _figure(figsize=(WIDTH - 2.4, 6.2)) as fig:
        ax = fig.subplots()
        greys = {"DRAM": "0.15", "L3": "0.4", "L2": "0.6"}
        for level in reversed(rl.LEVELS):  # DRAM, L3, L2: lowest roof first
            bw = roof.bandwidth_gbs[level]
            ax.plot(xs, np.minimum(peak, xs * bw), color=greys[level], linewidth=1.6,
                    zorder=1)
            # labels at the left edge: the roofs are parallel (slope 1), so their labels
            # stack in bandwidth order without overlapping
            ax.annotate(f"{level} {bw:.0f} GB/s", (x_lo * 1.15, x_lo * 1.15 * bw),
                        textcoords="offset points", xytext=(0, 5), fontsize=10,
                        color=greys[level], ha="left", va="bottom")
        # at the nearest ridge point, where the flat roof starts and points are fewest
        ax.text(peak / max(roof.bandwidth_gbs.values()) * 1.1, peak * 1.08,
                f"float32 peak {peak:.0f} GFLOP/s", ha="left", va="bottom", fontsize=10,
                color="0.15")
        if (ok["dtype"].astype(str) == "float64").any() and "float64" in roof.peak_gflops:
            p64 = roof.peak_gflops["float64"]
            ax.axhline(p64, color="0.3", linewidth=1.2, linestyle=(0, (4, 3)), zorder=1)
            ax.text(x_hi / 1.2, p64 / 1.08, f"float64 peak {p64:.0f} GFLOP/s", ha="right",
                    va="top", fontsize=10, color="0.3")
        handles: dict[str, object] = {}
        for label, algo, operator, _, g in _series(ok):
            for dtype, gg in g.groupby(g["dtype"].astype(str), sort=True):
                hollow = operator != "conv"
                ax.scatter(gg["intensity"], gg["rate"], s=36, zorder=3,
                           marker="s" if dtype == "float64" else "o",
                           facecolors="white" if hollow else colour[algo],
                           edgecolors=colour[algo], linewidths=1.4)
            handles.setdefault(label, Line2D([], [], marker="o", linestyle="none",
                                             color=colour[algo], markersize=7))
        if (ok["operator"] != "conv").any():
            handles["different operator (hollow)"] = Line2D(
                [], [], marker="o", linestyle="none", color="0.4", markerfacecolor="white",
                markersize=7)
        if (ok["dtype"].astype(str) == "float64").any():
            handles["float64 (square)"] = Line2D([], [], marker="s", linestyle="none",
                                                 color="0.4", markersize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        _plain_log(ax.yaxis)
        ax.set_xlim(x_lo, x_hi)
        y_lo = min(ok["rate"].min(), x_lo * roof.bandwidth_gbs["DRAM"]) / 2
        ax.set_ylim(y_lo, max(ok["rate"].max(), peak) * 1.6)
        ax.set_xlabel("arithmetic intensity (FLOP per byte moved, log scale)")
        ax.set_ylabel("GFLOP/s (direct-method FLOPs / time, log scale)")
        ax.set_title(f"How close to the machine's limits?  Roofline at {roof.threads} "
                     f"thread{'s' if roof.threads != 1 else ''} (measured GEMM peak and triad "
                     "bandwidths)", loc="left", fontsize=13)
        ax.legend(handles.values(), handles.keys(), loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False, title="algorithm")
        fig.tight_layout()
        return _save(fig, path)


# Markers told apart without colour (colour is the algorithm's): one per frontier group.
GROUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def accuracy_speed(df: pd.DataFrame, path) -> Path | None:
    """The fast algorithms' error against their speed-up over direct, log-log
    (`convbench.analysis.accuracy_speed`): one point per result, in its algorithm's colour
    and its group's marker (filter size and stride, `convbench.analysis.FRONTIER_GROUP`);
    each group's frontier points filled and joined by a line, the dominated ones hollow.  An
    exact result (error 0) is drawn at `MIN_ERR`.  None when no fast result has a direct time
    on its problem."""
    pts = analysis.accuracy_speed(df) if _has_rows(df) else pd.DataFrame()
    if pts.empty:
        return None
    colour = colors(pts["algorithm"])
    pts = pts.assign(y=pts["error"].astype(float).clip(lower=MIN_ERR),
                     x=pts["speedup"].astype(float))
    groups = list(pts.groupby(list(analysis.FRONTIER_GROUP), sort=True, dropna=False))
    with _figure(figsize=(WIDTH - 2.4, 6.0)) as fig:
        ax = fig.subplots()
        ax.axvline(1.0, color="0.5", linewidth=1.2, linestyle=(0, (4, 3)), zorder=1)
        ax.text(1.0, 0.02, "as fast as direct ", transform=ax.get_xaxis_transform(),
                rotation=90, ha="right", va="bottom", fontsize=10, color="0.35")
        group_handles: dict[str, Line2D] = {}
        for i, (key, g) in enumerate(groups):
            marker = GROUP_MARKERS[i % len(GROUP_MARKERS)]
            name = analysis.frontier_group_text(
                dict(zip(analysis.FRONTIER_GROUP, key, strict=True)))
            front = g[g["on_frontier"]].sort_values(["x", "y"])
            ax.plot(front["x"], front["y"], color="0.25", linewidth=1.3, zorder=2)
            for algo, gg in g.groupby("algorithm", sort=False):
                on = gg[gg["on_frontier"]]
                off = gg[~gg["on_frontier"]]
                ax.scatter(on["x"], on["y"], marker=marker, s=55, color=colour[algo],
                           edgecolors="0.2", linewidths=0.8, zorder=4)
                ax.scatter(off["x"], off["y"], marker=marker, s=45, facecolors="white",
                           edgecolors=colour[algo], linewidths=1.4, zorder=3)
            group_handles[name] = Line2D([], [], marker=marker, color="0.25", linewidth=1.3,
                                         markerfacecolor="0.6", markersize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        ax.set_xlabel("speed-up over direct on the same problem (log scale; right is faster)")
        ax.set_ylabel("max|error| / max|reference| (log scale; lower is more accurate)")
        ax.set_title("What does each fast algorithm's speed cost in accuracy?  Filled points "
                     "joined by a line: the frontier of each filter size and stride",
                     loc="left", fontsize=12)
        algos = [Line2D([], [], marker="o", linestyle="none", color=colour[a], markersize=7,
                        label=analysis.label(a, None))
                 for a in algorithm_order(pts["algorithm"])]
        hollow = Line2D([], [], marker="o", linestyle="none", color="0.4",
                        markerfacecolor="white", markersize=7, label="dominated (hollow)")
        first = ax.legend(handles=[*algos, hollow], loc="upper left",
                          bbox_to_anchor=(1.01, 1.0), frameon=False, title="algorithm")
        ax.add_artist(first)
        ax.legend(group_handles.values(), group_handles.keys(), loc="lower left",
                  bbox_to_anchor=(1.01, 0.0), frameon=False, title="filter, stride")
        fig.tight_layout()
        return _save(fig, path)


# The roofline chart needs the run's roofline (meta.json) besides the rows: `write_charts`
# draws it, after the GFLOP/s chart, when it is given one.
ROOFLINE_CHART = ("roofline.png", roofline,
                  "Each row under the roofline of this machine: min(GEMM peak, intensity × "
                  "triad bandwidth) for data in L2, L3 and DRAM (float32 roofs; squares are "
                  "float64). Intensity counts the compulsory bytes plus the algorithm's own "
                  "intermediates, written and read once: an upper bound on its traffic.")

# The charts of a report, in the order it shows them: (file name, function, caption).
CHARTS = (
    ("time_vs_filter.png", time_vs_filter,
     "Median time per call against filter size; shaded bands mark where the winner changes."),
    ("winner_map.png", winner_map,
     "The fastest accurate algorithm for each filter size and stride, and its lead over the "
     "runner-up."),
    ("gflops_vs_filter.png", gflops_vs_filter,
     "Effective GFLOP/s: the direct method's FLOP count divided by the measured time."),
    ("network.png", network, "Each network layer's time per algorithm; the star marks the "
     "fastest."),
    ("error_vs_filter.png", error_vs_filter,
     "Worst relative error at each filter size; dashed lines are the tolerances."),
    ("accuracy_speed.png", accuracy_speed,
     "Accuracy against speed: each FFT and Winograd result's error against its speed-up over "
     "direct on the same problem; filled points joined by a line are the frontier of their "
     "filter size and stride (no other result there is both faster and more accurate)."),
    ("phases.png", phases,
     "Each phase's share of an algorithm's time (transforms against the multiply), timed "
     "phase by phase."),
    ("costs.png", costs, "Compile time and workspace per algorithm."),
)


def write_charts(df: pd.DataFrame, out_dir, roofline=None) -> list[tuple[Path, str]]:
    """Every chart that has something to show, as (path, caption), in `CHARTS` order, with
    `ROOFLINE_CHART` after the GFLOP/s chart when ``roofline`` (the run's
    ``meta["roofline"]``) is given."""
    out = []
    for filename, chart, caption in CHARTS:
        path = chart(df, Path(out_dir) / filename)
        if path is not None:
            out.append((path, caption))
        if filename == "gflops_vs_filter.png" and roofline is not None:
            name, draw, text = ROOFLINE_CHART
            path = draw(df, Path(out_dir) / name, roofline)
            if path is not None:
                out.append((path, text))
    return out
