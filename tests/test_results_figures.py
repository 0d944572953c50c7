"""experiments/results_figures.py: docs/RESULTS.md's tables and effect plots from rules JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from ganarch.analysis.claims import CLAIMS, resolve
from ganarch.analysis.rules import rules_table
from ganarch.search.design import DesignSampler, design_for
from ganarch.search.space import load_space

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "results_figures.py"


def _script():
    spec = importlib.util.spec_from_file_location("results_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rules_json(steps: int, effects: dict[int, float], pair: float, seed: int) -> dict:
    """A real designed study's rules table (32-run design, synthetic responses): the planted
    main effects, a planted 1×2 interaction (clear of every other chain in this design) and,
    when ``pair`` is set, a 1×4 one about 3.7 standard errors strong: past its unadjusted
    interval's edge (2.45), short of the Bonferroni one's (4.88)."""
    space = load_space("claims")
    sampler = DesignSampler(design_for(space, "fractional32"))
    rng = np.random.default_rng(seed)

    def objective(trial):
        choices = space.suggest(trial)
        level = {c.id: 1 if c.side(choices) == "paper" else -1 for c in CLAIMS}
        level[4] = 1 if not choices["g_output_norm"] else -1
        mean = 0.5 + sum(effects[i] / 2 * level[i] for i in effects) + pair * level[1] * level[2]
        mean += (0.004 if pair else 0.0) * level[1] * level[4]
        trial.set_user_attr("choices", resolve(choices))
        return float(mean + rng.normal(0, 0.005))

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("ganarch", {"data": "synthetic", "steps": steps, "seeds": 1})
    study.optimize(objective, n_trials=sampler.design.runs)
    return json.loads(json.dumps(rules_table(study).to_dict()))


def test_tables_and_effect_plot_follow_the_rules_json(tmp_path, capsys):
    short = {1: 0.0, 2: -0.08, 3: 0.10, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0}
    long = {1: 0.0, 2: -0.08, 3: 0.10, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.12}
    for steps, effects, pair in ((200, short, 0.0), (1000, long, 0.05)):
        table = _rules_json(steps, effects, pair, seed=steps)
        (tmp_path / f"claims-synthetic-16-{steps}.rules.json").write_text(json.dumps(table))
    (tmp_path / "claims-not-a-study.rules.json").write_text("{}")  # not DATA-SIZE-STEPS: skipped

    assert _script().main([str(tmp_path), "-o", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "fig" / "effects-16.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    short_part, long_part = out.split("#### synthetic, 16×16, 1000 steps")
    assert "#### synthetic, 16×16, 200 steps" in short_part
    rows = {
        s: [line for line in part.splitlines() if line.startswith("| ") and line[2].isdigit()]
        for s, part in (("short", short_part), ("long", long_part))
    }
    assert [len(r) for r in rows.values()] == [7, 7]
    verdict = {
        s: {int(r.split(" | ")[0][2:]): r.split(" | ")[-1] for r in rs} for s, rs in rows.items()
    }
    # The planted effects: claim 3 helps, 2 hurts at both lengths; 7 only in the long study.
    assert verdict["short"][3].startswith("confirmed") and verdict["long"][3].startswith(
        "confirmed"
    )
    assert verdict["short"][2].startswith("contradicted")
    assert verdict["short"][7].startswith("inconclusive")
    assert verdict["long"][7].startswith("confirmed")
    # The planted 1×2 interaction (effect = 2 × 0.05) is the one Bonferroni-clear chain.
    assert "Chains whose Bonferroni interval excludes 0: 1 (1×2)." in long_part
    top = long_part[long_part.index("Largest interaction chains") :]
    assert "1×4:" in top  # among the three largest, shown, but not counted as Bonferroni-clear
    assert "Chains whose Bonferroni interval excludes 0: 0." in short_part


def test_a_folder_without_rules_tables_is_refused(tmp_path, capsys):
    assert _script().main([str(tmp_path), "-o", str(tmp_path / "fig")]) == 2
    assert "no claims-DATA-SIZE-STEPS.rules.json" in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()


@pytest.mark.parametrize(
    "name", ["claims-digits-16-200.rules.json", "claims-shapes-32-2000.rules.json"]
)
def test_study_names_give_dataset_size_and_steps(name):
    m = _script().NAME.match(name)
    assert m and m["data"] in {"digits", "shapes"} and int(m["size"]) in {16, 32}


def test_the_plotted_points_are_the_tables_effects_and_intervals():
    table = _rules_json(1000, {1: 0.0, 2: -0.08, 3: 0.10, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.12}, 0.0, 3)
    rows = table["rules"]
    rows[4] = {**rows[4], "effect": None, "ci_low": None, "ci_high": None}  # no verdict: no point
    x, y, below, above = _script().effect_points(rows, 1, 2)
    kept = [r for r in rows if r["effect"] is not None]
    assert len(x) == 6 and x == pytest.approx([r["claim"] + 0.175 for r in kept])  # 2nd of 2
    assert y == [r["effect"] for r in kept]
    assert [e - b for e, b in zip(y, below, strict=True)] == pytest.approx(
        [r["ci_low"] for r in kept]
    )
    assert [e + a for e, a in zip(y, above, strict=True)] == pytest.approx(
        [r["ci_high"] for r in kept]
    )
    assert y[1] < 0 < y[2]  # claim 2 hurts, claim 3 helps, as planted


def test_a_16_run_design_and_an_unreadable_table(tmp_path, capsys):
    table = _rules_json(200, {1: 0.0, 2: -0.08, 3: 0.10, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0}, 0.0, 1)
    table["design"]["interactions"] = None  # what a 16-run design records
    (tmp_path / "claims-my-data-16-200.rules.json").write_text(json.dumps(table))
    assert _script().main([str(tmp_path), "-o", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert "#### my-data, 16×16, 200 steps" in out
    assert "No two-factor interaction chains estimated" in out
    (tmp_path / "claims-digits-16-200.rules.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a rules table"):
        _script().main([str(tmp_path), "-o", str(tmp_path / "fig")])
    (tmp_path / "claims-digits-16-200.rules.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"claims-digits-16-200\.rules\.json: not a readable"):
        _script().main([str(tmp_path), "-o", str(tmp_path / "fig")])
