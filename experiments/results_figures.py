"""Figures and Markdown tables for docs/RESULTS.md from `ganarch rules --json` outputs.

Reads the ``*.rules.json`` files that ``experiments/rules_at_scale.sh`` (or a run by hand)
wrote, one per designed study named ``claims-DATA-SIZE-STEPS``, and writes:

- ``effects-SIZE.png``: per dataset, each claim's effect with its 95% interval at every
  training length, side by side (does a verdict change with training length?);
- a Markdown table per study on stdout: effect [95% CI], flip rate, seed flips, verdict; then
  the two-factor interaction chains whose Bonferroni interval excludes 0.

    python experiments/results_figures.py results/ -o docs/results/

It reads only the JSON, so it needs nothing but matplotlib (a dependency of ganarch's report).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

#: ``claims-DATA-SIZE-STEPS.rules.json`` (DATA may hold "-": the last two fields are numbers).
NAME = re.compile(r"^claims-(?P<data>.+)-(?P<size>\d+)-(?P<steps>\d+)\.rules\.json$")


def load(folder: Path) -> dict[tuple[str, int, int], dict]:
    """``(dataset, size, steps) -> rules JSON`` for every designed study's table in ``folder``."""
    found = {}
    for path in sorted(folder.glob("claims-*.rules.json")):
        m = NAME.match(path.name)
        if m:
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise SystemExit(f"error: {path}: not a readable rules JSON ({exc})") from None
            if not isinstance(table, dict) or not isinstance(table.get("rules"), list):
                raise SystemExit(f"error: {path}: not a rules table (no 'rules' list)")
            found[(m["data"], int(m["size"]), int(m["steps"]))] = table
    return found


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def markdown(key: tuple[str, int, int], table: dict) -> str:
    data, size, steps = key
    lines = [
        f"#### {data}, {size}×{size}, {steps} steps",
        "",
        f"Evidence: {table['evidence']}.",
        "",
        "| # | claim | effect [95% CI] | flip rate | seed flips | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in table["rules"]:
        ci = f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
        rate = "–" if r.get("flip_rate") is None else f"{100 * r['flip_rate']:.0f}%"
        seeds = "–" if not r.get("flips") else f"{r['flips'][0]}/{r['flips'][1]}"
        lines.append(
            f"| {r['claim']} | {r['name']} | {_num(r['effect'])} {ci} | {rate} | {seeds} | "
            f"{r['shown_verdict']} |"
        )
    chains = [
        c
        for c in (table.get("design") or {}).get("interactions") or []
        if c.get("effect") is not None and c.get("ci_low_bonferroni") is not None
    ]
    lines.append("")
    if not chains:
        lines.append("No two-factor interaction chains estimated (the design leaves no room).")
        return "\n".join(lines) + "\n"
    strong = [c for c in chains if c["ci_low_bonferroni"] > 0 or c["ci_high_bonferroni"] < 0]
    top = sorted(chains, key=lambda c: -abs(c["effect"]))[:3]
    lines.append(
        "Largest interaction chains (effect, unadjusted 95% CI, Bonferroni CI over "
        f"{len(chains)}): "
        + "; ".join(
            f"{' = '.join(c['chain'])}: {_num(c['effect'])} [{_num(c['ci_low'])}, "
            f"{_num(c['ci_high'])}], Bonferroni [{_num(c['ci_low_bonferroni'])}, "
            f"{_num(c['ci_high_bonferroni'])}]"
            for c in top
        )
        + f". Chains whose Bonferroni interval excludes 0: {len(strong)}"
        + (" (" + "; ".join(" = ".join(c["chain"]) for c in strong) + ")." if strong else ".")
    )
    return "\n".join(lines) + "\n"


def effect_points(rows: list[dict], i: int, n: int) -> tuple[list[float], ...]:
    """The plotted points of one study (the ``i``-th of ``n`` lengths, offset side by side):
    ``x, effect, below, above`` for every claim with an interval; a claim without one
    ("not enough trials", aliased) has no point."""
    width = 0.7 / max(n, 1)
    kept = [r for r in rows if None not in (r.get("effect"), r.get("ci_low"), r.get("ci_high"))]
    return (
        [r["claim"] - 0.35 + width * (i + 0.5) for r in kept],
        [r["effect"] for r in kept],
        [r["effect"] - r["ci_low"] for r in kept],
        [r["ci_high"] - r["effect"] for r in kept],
    )


def effects_figure(found: dict[tuple[str, int, int], dict], size: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, s, _ in found if s == size})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.6), squeeze=False)
    for ax, data in zip(axes[0], datasets, strict=True):
        lengths = sorted(n for d, s, n in found if d == data and s == size)
        for i, steps in enumerate(lengths):
            x, y, below, above = effect_points(found[(data, size, steps)]["rules"], i, len(lengths))
            ax.errorbar(x, y, yerr=[below, above], fmt="o", capsize=3, label=f"{steps} steps")
        score = found[(data, size, lengths[0])].get("score", "score")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(1, 8))
        ax.set_xlabel("claim (Radford et al. 2015)")
        ax.set_ylabel(f"effect on {score} (paper − alternative)")
        ax.set_title(f"{data}, {size}×{size}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"effects-{size}.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding claims-*.rules.json")
    parser.add_argument("-o", "--out", type=Path, required=True, help="folder for the figures")
    args = parser.parse_args(argv)
    found = load(args.folder)
    if not found:
        print(f"error: no claims-DATA-SIZE-STEPS.rules.json in {args.folder}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for size in sorted({s for _, s, _ in found}):
        print(f"<!-- figure: {effects_figure(found, size, args.out)} -->")
    for key in sorted(found):
        print(markdown(key, found[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
