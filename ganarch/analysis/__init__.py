"""Rule rediscovery: the paper's claims as data, rules tables from studies, ablations, reports.

``rules_table(study)`` reads a search (or a designed study: main effects by least squares);
``ablate(...)`` runs the controlled experiment;
``write_report(study, out_dir)`` writes one offline HTML page. The verdict rule is in
``ganarch.analysis.stats``.
"""

from __future__ import annotations

from typing import Any

from ganarch.analysis.claims import CLAIMS, Claim, get_claim
from ganarch.analysis.rules import (
    EVALUATORS,
    EVIDENCE_ABLATION,
    EVIDENCE_SEARCH,
    RuleRow,
    RulesTable,
    rules_table,
)
from ganarch.analysis.stats import (
    N_MIN,
    Effect,
    bootstrap_diff,
    bootstrap_paired,
    search_diff,
    t_paired,
    verdict,
    welch_diff,
)

__all__ = [
    "CLAIMS",
    "EVALUATORS",
    "EVIDENCE_ABLATION",
    "EVIDENCE_SEARCH",
    "N_MIN",
    "Claim",
    "Effect",
    "RuleRow",
    "RulesTable",
    "ablate",
    "bootstrap_diff",
    "bootstrap_paired",
    "get_claim",
    "rules_table",
    "search_diff",
    "t_paired",
    "verdict",
    "welch_diff",
    "write_report",
]


def __getattr__(name: str) -> Any:  # torch and matplotlib load only when these are used
    if name == "ablate":
        from ganarch.analysis.ablation import ablate

        return ablate
    if name == "write_report":
        from ganarch.analysis.report import write_report

        return write_report
    raise AttributeError(f"module 'ganarch.analysis' has no attribute {name!r}")
