"""Isolation in the code space: an isolation forest fitted on the training codes, held as tensors.

Deep Isolation Forest (Xu et al. 2023) isolates rows in (random) learned representations; here
the representation is the autoencoder's own code. The forest is fitted at ``fit`` on the codes of
up to :data:`FOREST_ROWS` training rows (drawn by the fit's seed) with scikit-learn's
``IsolationForest`` (:data:`FOREST_TREES` trees of up to :data:`FOREST_SAMPLES` rows, the
isolation forest's own defaults), and then kept as five padded tables, one row per tree:

* ``feature`` (int64) and ``threshold`` (float64): the split of each node (a leaf: feature 0 and
  threshold +inf, so that it sends every row to itself);
* ``left`` / ``right`` (int64): the flat index (``tree * nodes + node``) of each child (a leaf: itself);
* ``value`` (float64): at a leaf, the path length ``depth + c(rows in the leaf)``, where ``c(m)`` is
  the mean path length of an unsuccessful search in a binary tree of m rows.

The score of a code ``z`` is ``2^(-mean_t value_t(z) / c(psi))`` (Liu et al. 2008; scikit-learn's
``-score_samples``), in (0, 1), higher = more anomalous. It is evaluated by a loop of fixed depth
of gathers and ``where`` (:func:`forest_path`), so the same arithmetic runs in PyTorch and in the
exported ONNX graph: codes are compared in float64 with the float64 thresholds, as scikit-learn
compares its float32 copy of the codes, so the trees send every row where scikit-learn does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["FOREST_TREES", "FOREST_SAMPLES", "FOREST_ROWS", "fit_forest", "forest_path", "forest_split",
           "average_path_length"]

FOREST_TREES = 100    # trees (IsolationForest's default)
FOREST_SAMPLES = 256  # rows per tree (IsolationForest's default max_samples)
FOREST_ROWS = 4096    # training rows whose codes the forest is fitted on (a random sample above that)
TABLES = ("feature", "threshold", "left", "right", "value")
#: kept beside the tables when present (forests fitted by older versions lack it): ``share``, each node's share of
#: its parent's rows (the root: 1), from which :func:`forest_split` weighs how much a split isolated a row
OPTIONAL_TABLES = ("share",)


def average_path_length(m) -> np.ndarray:
    """``c(m)``: the mean path length of an unsuccessful search in a binary search tree of m rows."""
    m = np.asarray(m, dtype=np.float64)
    out = np.zeros_like(m)
    out[m == 2] = 1.0
    big = m > 2
    out[big] = 2.0 * (np.log(m[big] - 1.0) + np.euler_gamma) - 2.0 * (m[big] - 1.0) / m[big]
    return out


def fit_forest(Z: np.ndarray, seed: int, n_trees: int = FOREST_TREES, max_samples: int = FOREST_SAMPLES) -> dict:
    """The forest's tables (see the module) fitted on the rows of ``Z`` (float32 codes), and its constants:
    ``depth`` (the loop's length, the deepest leaf) and ``c`` (``c(psi)`` for psi rows per tree)."""
    from sklearn.ensemble import IsolationForest

    Z = np.ascontiguousarray(np.asarray(Z, dtype=np.float32).reshape(len(Z), -1))
    psi = min(int(max_samples), len(Z))
    forest = IsolationForest(n_estimators=n_trees, max_samples=psi, random_state=int(seed) % 2**32).fit(Z)
    remap = forest._max_features != Z.shape[1]  # trees that saw a subset of the features
    trees = [e.tree_ for e in forest.estimators_]
    nodes = max(t.node_count for t in trees)
    T = len(trees)
    feature = np.zeros((T, nodes), np.int64)
    threshold = np.full((T, nodes), np.inf, np.float64)
    left = np.tile(np.arange(nodes, dtype=np.int64), (T, 1))
    right = left.copy()
    value = np.zeros((T, nodes), np.float64)
    share = np.ones((T, nodes), np.float64)
    deepest = 0
    for i, (tree, used) in enumerate(zip(trees, forest.estimators_features_)):
        depth = np.zeros(tree.node_count, np.int64)
        for node in range(tree.node_count):  # children come after their parent
            lc, rc = tree.children_left[node], tree.children_right[node]
            if lc >= 0:
                depth[lc] = depth[rc] = depth[node] + 1
                feature[i, node] = used[tree.feature[node]] if remap else tree.feature[node]
                threshold[i, node] = tree.threshold[node]
                left[i, node], right[i, node] = lc, rc
                for child in (lc, rc):
                    share[i, child] = tree.n_node_samples[child] / tree.n_node_samples[node]
            else:
                value[i, node] = depth[node] + average_path_length(tree.n_node_samples[node])
        deepest = max(deepest, int(depth.max()))
    offset = (np.arange(T, dtype=np.int64) * nodes)[:, None]
    return {"feature": feature, "threshold": threshold, "left": left + offset, "right": right + offset,
            "value": value, "share": share, "depth": deepest, "c": float(average_path_length(psi)) or 1.0}


def _roots(z: torch.Tensor, feature) -> torch.Tensor:
    """(n, trees): the flat index of every tree's root, for each row of ``z`` (every batch size)."""
    roots = torch.arange(feature.shape[0], dtype=torch.int64, device=z.device) * feature.shape[1]
    return roots[None, :] + torch.zeros_like(z[:, :1], dtype=torch.int64)


def _walk(z: torch.Tensor, feature, threshold, left, right, depth: int):
    """The rows of ``z`` (n, features, float64) down every tree: ``depth`` steps of gathers on the flat tables
    ((trees, nodes), children as flat indices), yielding (split feature, node, next node), each (n, trees), per
    step; a leaf points at itself, so a row that reached one stays there."""
    node = _roots(z, feature)
    feature, threshold = feature.reshape(-1), threshold.reshape(-1)
    left, right = left.reshape(-1), right.reshape(-1)
    for _ in range(int(depth)):
        f = feature[node]
        nxt = torch.where(z.gather(1, f) <= threshold[node], left[node], right[node])
        yield f, node, nxt
        node = nxt


def forest_path(z: torch.Tensor, feature, threshold, left, right, value, depth: int) -> torch.Tensor:
    """Mean path length of each row of ``z`` (n, features) over the trees (float64): ``depth`` steps of
    gathers on the flat tables (``feature`` ... ``value``: (trees, nodes), children as flat indices)."""
    z = z.reshape(z.shape[0], -1).to(torch.float64)
    node = _roots(z, feature)
    for _, _, node in _walk(z, feature, threshold, left, right, depth):
        pass
    return value.reshape(-1)[node].mean(dim=1)


def forest_split(z: torch.Tensor, feature, threshold, left, right, share, depth: int) -> torch.Tensor:
    """(n, features) float64: for each row of ``z``, per feature, how much its splits narrowed the row's company
    along the row's path in every tree, summed over the trees: a split on feature j that sends the row to a child
    holding the share ``s`` of the node's training rows adds ``-log s`` to feature j. Along one path these add up
    to ``log(rows at the root / rows in the leaf)``, the narrowing that a short path means; a cut that leaves the
    row with few others counts most (DIFFI, Carletti et al. 2020, weighs splits by the same imbalance). The same
    loop as :func:`forest_path`, with a scatter-add that runs in the ONNX graph too."""
    share = share.reshape(-1)
    z = z.reshape(z.shape[0], -1).to(torch.float64)
    acc = torch.zeros_like(z)
    for f, node, nxt in _walk(z, feature, threshold, left, right, depth):
        w = torch.where(nxt != node, -torch.log(share[nxt]), torch.zeros_like(share[nxt]))  # a leaf points at itself
        acc = acc.scatter_add(1, f, w)
    return acc


def isolation_score(path: torch.Tensor, c: float) -> torch.Tensor:
    """``2^(-path / c)``."""
    return torch.exp(path * (-math.log(2.0) / float(c)))
