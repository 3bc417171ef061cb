"""The winner model: the algorithm a problem's shape predicts, learned from this machine's choice
database (`convbench.choices`), with its regret measured.

``algo="auto"`` in ``predict`` mode uses it for problems never measured.  It regresses, from a
few features of the problem (`FEATURES`), one output per algorithm: the log of that
algorithm's recorded time over the best time on the problem (its regret; `UNTIMED` where it was
not timed: it does not compute the problem, or failed or was inaccurate there).  The prediction
is the algorithm of least expected regret among those that compute the problem.  So the model
is trained on what a wrong choice costs, not only on who won: a problem whose top two are
within a few percent teaches little, one where the winner is 7x ahead a lot.

Two scikit-learn models of the same targets: a random forest (`FOREST_SIZE` bagged trees)
predicts, and one regression tree gives the rules a reader follows (`Model.rules`: one line
per region of one algorithm), a summary of what the forest learnt rather than its exact
decision.  One tree alone predicted unstably on a few hundred recorded problems: with the
network presets held out, its total regret per network moved between 1.04 and 1.72 with its
depth and leaf size, and a tree that was right on ResNet-50 was 1.37x off on MobileNet (one
large layer mispredicted); the forest, fitted on the same problems, stayed within 1.03 on all
three.

How good it is, is measured, not assumed: `regret` fits the model on all but one fold of the
recorded problems and predicts the held-out fold (`FOLDS`-fold cross-validation, shuffled with a
fixed seed: the same database gives the same figures), and `held_out` judges it on saved runs'
problems with the model fitted on every other recorded problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import registry
from .spec import ConvSpec

FEATURES = ("filter_h", "filter_w", "stride", "dilation", "log2_in_channels",
            "log2_out_channels", "log2_out_pixels", "log2_batch", "depthwise", "grouped",
            "log2_gflop", "intensity", "itemsize", "input_gradient", "weight_gradient")
MAX_DEPTH = 6  # the rules' tree: at most 64 leaves, rules a reader can follow
MIN_LEAF = 2
FOREST_SIZE = 100
FOREST_DEPTH = 8
UNTIMED = math.log(10.0)  # the log-regret counted for an algorithm not timed on a problem
FOLDS = 5


def features(spec: ConvSpec) -> list[float]:
    """`FEATURES` of one problem."""
    return [spec.r, spec.s, max(spec.sh, spec.sw), max(spec.dh, spec.dw), math.log2(spec.c),
            math.log2(spec.k), math.log2(spec.oh * spec.ow), math.log2(spec.n),
            float(spec.groups == spec.c and spec.groups > 1), float(1 < spec.groups < spec.c),
            math.log2(spec.flops / 1e9), spec.flops / spec.min_bytes, spec.itemsize,
            float(spec.direction == "bwd_d"), float(spec.direction == "bwd_w")]


@dataclass
class Model:
    """The fitted forest (predictions) and tree (rules), the algorithms of their outputs, and
    what they were fitted on."""

    forest: object
    tree: object
    algorithms: list
    device: str
    n_problems: int

    def _ranked(self, values) -> list[str]:
        return [self.algorithms[i] for i in np.argsort(values, kind="stable")]

    def predict(self, spec: ConvSpec) -> str:
        """The algorithm of least expected regret that computes ``spec`` on the model's
        device."""
        values = self.forest.predict(np.array([features(spec)])).reshape(-1)  # per algorithm
        for name in self._ranked(values):
            try:
                if registry.get(name, self.device).supports(spec) is None:
                    return name
            except ValueError:  # an algorithm no longer registered
                continue
        raise ValueError(f"model: no algorithm it knows computes {spec.id}")

    def rules(self) -> str:
        """One line per rule: its conditions, the algorithm of least expected regret there,
        that regret (the geometric mean over the rule's problems) and how many problems.  A
        subtree whose leaves all pick the same algorithm is one rule."""
        t = self.tree.tree_

        def best(node):
            return self._ranked(t.value[node].reshape(-1))[0]  # value: (outputs, 1)

        def walk(node, path) -> list[tuple[list, int]]:
            left, right = t.children_left[node], t.children_right[node]
            if left == right:  # a leaf
                return [(path, node)]
            name, cut = FEATURES[t.feature[node]], t.threshold[node]
            rules = (walk(left, [*path, f"{name} <= {cut:.3g}"])
                     + walk(right, [*path, f"{name} > {cut:.3g}"]))
            return [(path, node)] if len({best(n) for _, n in rules}) == 1 else rules

        return "".join(f"{' and '.join(path) or 'always'}: {best(n)} (expected "
                       f"{math.exp(t.value[n].min()):.2f}x the best, "
                       f"{int(t.n_node_samples[n])} problems)\n" for path, n in walk(0, []))


def _entries(entries: dict, device: str) -> list[tuple[ConvSpec, dict]]:
    return [(ConvSpec.parse(e["problem"]), e) for e in entries.values()
            if e["device"] == device and e.get("times")]


def fit(entries: dict, device: str = "cpu") -> Model:
    """A model of ``entries`` (a choice table) on ``device``."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor

    data = _entries(entries, device)
    if not data:
        raise ValueError(f"model: no choices recorded on {device} to learn from (run "
                         "convbench run sweep first)")
    algorithms = sorted(set().union(*(e["times"] for _, e in data)))
    y = []
    for _, e in data:
        best = min(t["median_s"] for t in e["times"].values())
        y.append([math.log(e["times"][a]["median_s"] / best) if a in e["times"] else UNTIMED
                  for a in algorithms])
    x, y = np.array([features(s) for s, _ in data]), np.array(y)
    forest = RandomForestRegressor(n_estimators=FOREST_SIZE, max_depth=FOREST_DEPTH,
                                   random_state=0).fit(x, y)
    tree = DecisionTreeRegressor(max_depth=MAX_DEPTH, min_samples_leaf=MIN_LEAF,
                                 random_state=0).fit(x, y)
    return Model(forest, tree, algorithms, device, len(data))


def regret(entries: dict, device: str = "cpu", folds: int = FOLDS) -> pd.DataFrame:
    """Cross-validated predictions: one row per recorded problem with the ``predicted`` and
    the best (``winner``) algorithm and ``regret``, the predicted one's time over the best
    time (NaN when the predicted algorithm was not timed on that problem)."""
    data = _entries(entries, device)
    if len(data) < 2:
        raise ValueError(f"model: {len(data)} problem(s) recorded on {device}; at least 2 are "
                         "needed to hold some out")
    order = np.random.default_rng(0).permutation(len(data))
    parts = np.array_split(order, min(folds, len(data)))
    rows = []
    for part in parts:
        held = set(part.tolist())
        train = {i: e for i, (_, e) in enumerate(data) if i not in held}
        model = fit(train, device)
        for i in part:
            spec, e = data[i]
            rows.append(_scored(model, spec, {a: t["median_s"] for a, t in e["times"].items()}))
    return pd.DataFrame(rows)


def _scored(model: Model, spec: ConvSpec, times: dict) -> dict:
    """``model``'s prediction for ``spec`` against the measured ``times`` (algorithm ->
    seconds): the best (``winner``) and predicted algorithms, their times and the regret."""
    pred = model.predict(spec)
    winner = min(times, key=times.get)
    t = times.get(pred, math.nan)
    return {"problem": spec.id, "winner": winner, "predicted": pred, "best_s": times[winner],
            "predicted_s": t, "regret": t / times[winner]}


def held_out(entries: dict, rows: pd.DataFrame, device: str = "cpu") -> pd.DataFrame:
    """Predictions for the problems of saved runs' ``rows``, by a model fitted on the recorded
    problems *other than those*: the same columns as `regret`, plus each problem's ``count``
    (how often it occurs in its network), times from the rows."""
    from . import analysis

    ranked = analysis.ranked(rows)
    ranked = ranked[ranked["device"] == device]
    test = set(ranked["problem"])
    model = fit({k: e for k, e in entries.items() if e["problem"] not in test}, device)
    out = []
    for problem, g in ranked.groupby("problem", sort=False):
        times = g.groupby("algorithm")["median_s"].min().astype(float).to_dict()
        out.append({**_scored(model, ConvSpec.parse(problem), times),
                    "name": g["name"].iloc[0],
                    "count": int(g["count"].iloc[0]) if "count" in g else 1})
    return pd.DataFrame(out)


def summary(table: pd.DataFrame) -> dict:
    """Median and worst regret, total (the predicted algorithms' summed time over the best
    ones', each problem counted as often as it occurs when the table has a ``count``), top-1
    accuracy, and how many predictions were not timed."""
    timed = table.dropna(subset=["regret"])
    count = timed["count"] if "count" in timed else 1
    return {"problems": len(table), "median": float(timed["regret"].median()),
            "worst": float(timed["regret"].max()),
            "total": float((timed["predicted_s"] * count).sum() / (timed["best_s"] * count).sum()),
            "top1": float((table["predicted"] == table["winner"]).mean()),
            "untimed": int(table["regret"].isna().sum())}
