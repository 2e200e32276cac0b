"""Population stability index (PSI): the one drift formula of the gate and the rollout.

The offline gate (``evaluate.drift``) compares held-out features with the training
reference; the live analysis of a rollout compares the canary's predicted classes with
stable's over the same window, and the canary's input features with the training
reference's bins. All three use these functions, so a threshold on ``drift_psi_max`` means
the same number in both places.

PSI = sum over bins of (cur - ref) * ln(cur / ref), with bin shares floored at 1e-4 so an
empty bin does not make it infinite. No I/O; numpy only where raw feature values are
binned (imported there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt

SHARE_FLOOR = 1e-4


def psi(reference_share: Sequence[float], current_share: Sequence[float]) -> float:
    """PSI of two distributions over the same bins (shares or counts; both are normalised).

    Plain Python over a few bins: the rollout's analysis runs where numpy may not be
    installed (a deploy-only environment)."""
    ref = [float(x) for x in reference_share]
    cur = [float(x) for x in current_share]
    if len(ref) != len(cur):
        raise ValueError(f"PSI needs the same bins on both sides ({len(ref)} != {len(cur)})")
    ref_total, cur_total = max(sum(ref), 1e-300), max(sum(cur), 1e-300)
    total = 0.0
    for r, c in zip(ref, cur, strict=True):
        r_share = max(r / ref_total, SHARE_FLOOR)
        c_share = max(c / cur_total, SHARE_FLOOR)
        total += (c_share - r_share) * math.log(c_share / r_share)
    return total


def psi_of_counts(reference: Mapping[str, float], current: Mapping[str, float]) -> float:
    """PSI of two labelled histograms (e.g. predicted-class counts of two tracks); a label
    missing on one side counts zero there."""
    labels = sorted(set(reference) | set(current))
    return psi([reference.get(k, 0.0) for k in labels], [current.get(k, 0.0) for k in labels])


def inner_edges(reference_column: npt.ArrayLike, bins: int) -> list[float]:
    """The inner bin edges of a feature: the reference's quantiles (deciles for bins=10),
    ties merged, so a discrete feature gets fewer bins. The outer bins are open, so every
    value lands in one; a constant feature has no inner edge."""
    import numpy as np

    column = np.asarray(reference_column, dtype=np.float64)
    if float(column.min()) == float(column.max()):
        return []
    return [float(e) for e in np.unique(np.quantile(column, np.linspace(0.0, 1.0, bins + 1)[1:-1]))]


def bin_counts(column: npt.ArrayLike, edges: Sequence[float]) -> npt.NDArray[Any]:
    """How many values fall in each bin of edges (len(edges) + 1 bins, outer bins open)."""
    import numpy as np

    values = np.asarray(column, dtype=np.float64)
    return np.bincount(
        np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1
    )


def reference_table(reference: npt.ArrayLike, bins: int) -> dict[str, Any]:
    """The training reference's bins per feature, for live drift (``drift_reference.json``).

    Each feature ``f<i>`` gets the inner edges :func:`inner_edges` makes and the reference's
    share of each bin. A feature constant in the reference gets the bins "below", "at" and
    "above" its value, so live PSI, like the offline one, scores values that left it.
    """
    import numpy as np

    rows = np.asarray(reference, dtype=np.float64)
    rows = rows.reshape(len(rows), -1)
    features: dict[str, dict[str, list[float]]] = {}
    for index in range(rows.shape[1]):
        column = rows[:, index]
        edges = inner_edges(column, bins)
        if not edges:
            value = float(column[0])
            edges = [value, float(np.nextafter(value, np.inf))]
        counts = bin_counts(column, edges)
        features[f"f{index}"] = {
            "edges": edges,
            "shares": [float(c) / len(column) for c in counts.tolist()],
        }
    return {"schema": 1, "bins": bins, "features": features}
