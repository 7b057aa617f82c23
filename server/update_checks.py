"""Checks on site updates before aggregation: nothing malformed or wildly off gets averaged.

A signed ledger entry proves who sent an update, not that the update is sane: a site with
a bug, a corrupted disk or bad intentions can send weights that would wreck the global
model. Every update that passed the ledger check is checked here, against the global
model the server sent for the round, and rejected (with the reason, in the round record)
when:

* its tensor names differ from the model's (missing or extra tensors);
* a tensor's shape or dtype differs from the model's;
* a value is NaN or infinite;
* its update norm ``||w_site − w_global||`` is more than ``factor`` times the median norm
  of the *other* updates of the round (leave-one-out, so the outlier cannot raise the
  median it is judged by; needs at least three well-formed updates, since with two
  there is no telling which one is off). ``factor = 0`` turns this check off.

Example:
    >>> import numpy as np
    >>> g = {"w": np.zeros(4, np.float32)}
    >>> ups = {"a": {"w": np.ones(4, np.float32)}, "b": {"w": np.ones(4, np.float32)},
    ...        "c": {"w": np.full(4, 100.0, np.float32)}, "d": {"w": np.zeros(3, np.float32)}}
    >>> sorted(check_updates(ups, g, factor=10.0).items())  # doctest: +NORMALIZE_WHITESPACE
    [('c', 'update norm 200 is 100x the median of the other sites (2); limit 10x'),
     ('d', "tensor 'w' has shape (3,), the model's is (4,)")]
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def malformed(update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> str | None:
    """Why ``update`` cannot be averaged into ``reference``'s model, or ``None``."""
    missing, extra = set(reference) - set(update), set(update) - set(reference)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {sorted(missing)[:3]}")
        if extra:
            parts.append(f"unknown tensors {sorted(extra)[:3]}")
        return "; ".join(parts)
    for name, ref in reference.items():
        a = np.asarray(update[name])
        if a.shape != np.shape(ref):
            return f"tensor {name!r} has shape {a.shape}, the model's is {np.shape(ref)}"
        if a.dtype != np.asarray(ref).dtype:
            return f"tensor {name!r} has dtype {a.dtype}, the model's is {np.asarray(ref).dtype}"
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            return f"tensor {name!r} holds NaN or infinite values"
    return None


def update_norm(update: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> float:
    """``||update − reference||`` over the floating-point tensors (float64 sums)."""
    total = 0.0
    for name, ref in reference.items():
        r = np.asarray(ref)
        if np.issubdtype(r.dtype, np.floating):
            d = np.asarray(update[name], np.float64) - r.astype(np.float64)
            total += float(np.dot(d.ravel(), d.ravel()))
    return math.sqrt(total)


def check_updates(
    updates: Mapping[str, Mapping[str, np.ndarray]],
    reference: Mapping[str, np.ndarray],
    factor: float = 10.0,
) -> dict[str, str]:
    """The updates to reject, with the reason; the others may be aggregated.

    Args:
        updates: each site's weights, by site name.
        reference: the global weights the server sent for the round.
        factor: largest allowed ratio of an update's norm to the median norm of the
            other well-formed updates (0: no norm check; needs at least 2 others).

    Returns:
        ``{site: reason}`` for every rejected update.
    """
    rejected = {site: why for site, u in updates.items() if (why := malformed(u, reference))}
    norms = {s: update_norm(u, reference) for s, u in updates.items() if s not in rejected}
    if factor > 0 and len(norms) >= 3:
        for site, norm in norms.items():
            others = float(np.median([n for s, n in norms.items() if s != site]))
            if norm > factor * max(others, 1e-12):
                rejected[site] = (
                    f"update norm {norm:.3g} is {norm / max(others, 1e-12):.0f}x the median of "
                    f"the other sites ({others:.3g}); limit {factor:g}x"
                )
    return rejected
