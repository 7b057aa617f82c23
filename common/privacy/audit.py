"""What an auditor does with ledgers: verify them, summarise them, recompute ε.

``verify`` checks each site ledger's chain and signatures, the consortium ledger's own
chain and every site entry in it, and that the two agree: every entry the server holds
must be in the site's ledger, unchanged (a site ledger that lost entries shows here).
Entries a site recorded that the server never received are listed as warnings (a reply
lost to a timeout looks the same as one deleted from the consortium record, so the
consortium ledger's own chain is what settles deletions there).

``recompute`` rebuilds every site's ε from the parameters in its entries with Google's
``dp-accounting`` (PLD for entries accounted with PRV, RDP for RDP): a library
independent of the Opacus accountant the site used. An entry whose claimed ε is lower
than the recomputed one by more than the tolerance is flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from common.privacy import ledger
from common.privacy.accountant import merge_steps
from common.privacy.ledger import Problem

TOLERANCE = 0.01  # relative: PRV and PLD are both numerical and agree to ~0.2% here


@dataclass
class Ledgers:
    """Ledger files read and sorted: site ledgers by site, and consortium ledgers."""

    sites: dict[str, tuple[str, list[dict]]] = field(default_factory=dict)  # site -> (file, lines)
    consortium: list[tuple[str, list[dict]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def load(paths: list[str | Path]) -> Ledgers:
    """Read ledger files; a consortium ledger is recognised by its records' ``entry``."""
    out = Ledgers()
    for path in paths:
        path = Path(path)
        name = str(path)
        if not path.is_file():
            out.problems.append(Problem(name, "no such file"))
            continue
        lines = ledger.read_lines(path)
        if not lines:
            out.problems.append(Problem(name, "empty ledger"))
            continue
        if "entry" in lines[0]:
            out.consortium.append((name, lines))
            continue
        site = next((x.get("site") for x in lines if "site" in x), None) or name
        if site in out.sites:
            out.problems.append(Problem(name, f"a second ledger for site {site!r}"))
            continue
        out.sites[site] = (name, lines)
    return out


def verify(
    paths: list[str | Path], registry: dict[str, str] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """Check ledgers; ``(problems, warnings)``, each list in file order.

    Args:
        paths: site ledgers and consortium ledgers, in any order.
        registry: ``{site: public key hex}``; ``None`` skips the registration check.
    """
    books = load(paths)
    problems, warnings = list(books.problems), []
    for name, lines in books.sites.values():
        problems += ledger.check_chain(lines, name, registry)
    for name, records in books.consortium:
        problems += ledger.check_consortium(records, name, registry)
        held = {r["entry"]["hash"] for r in records if "entry" in r and "hash" in r["entry"]}
        for line, record in enumerate(records, 1):
            entry = record.get("entry") or {}
            site = entry.get("site")
            if site not in books.sites:
                continue
            site_name, site_lines = books.sites[site]
            if entry.get("hash") not in {x.get("hash") for x in site_lines}:
                problems.append(
                    Problem(
                        f"{name} line {line} ({site} seq {entry.get('seq')})",
                        f"not in {site_name}: the site ledger lost or changed this entry",
                    )
                )
        for site, (site_name, site_lines) in books.sites.items():
            runs = _runs(records, site)  # runs this consortium ledger covers for the site
            for line, entry in enumerate(site_lines, 1):
                if entry.get("hash") not in held and entry.get("run") in runs:
                    warnings.append(
                        Problem(
                            f"{site_name} line {line} (seq {entry.get('seq')})",
                            "recorded by the site but not received by the server",
                        )
                    )
    return problems, warnings


def _runs(records: list[dict], site: str) -> set[str]:
    return {r["entry"].get("run") for r in records if r.get("entry", {}).get("site") == site}


def recompute_epsilon(
    steps: list[tuple[float, float, int]], delta: float, accountant: str
) -> float:
    """ε of ``steps`` ``(noise, sample rate, count)`` with Google's dp-accounting."""
    logging.getLogger("absl").setLevel(logging.ERROR)  # its RDP warns about skipped orders
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    if not steps:
        return 0.0
    acc = (
        pld_privacy_accountant.PLDAccountant()
        if accountant == "prv"
        else rdp_privacy_accountant.RdpAccountant()
    )
    for noise, q, count in steps:
        event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise))
        acc.compose(dp_accounting.SelfComposedDpEvent(event, count))
    return float(acc.get_epsilon(delta))


@dataclass
class Recomputed:
    """One DP entry: what it claimed and what the independent accountant says."""

    site: str
    seq: int
    round: int
    claimed: float
    recomputed: float

    @property
    def too_low(self) -> bool:
        return self.claimed < self.recomputed * (1 - TOLERANCE)


def recompute(paths: list[str | Path]) -> list[Recomputed]:
    """Recompute every DP entry's cumulative ε, per site, from the recorded parameters."""
    books = load(paths)
    out = []
    for site, (_, lines) in books.sites.items():
        history: list[tuple[float, float, int]] = []
        for entry in lines:
            dp = entry.get("dp")
            if not dp or dp.get("mechanism") != "dp-sgd":
                continue
            history.append((dp["noise_multiplier"], dp["sample_rate"], dp["steps"]))
            value = recompute_epsilon(merge_steps(history), dp["delta"], dp["accountant"])
            out.append(Recomputed(site, entry["seq"], entry["round"], dp["epsilon_total"], value))
    return out
