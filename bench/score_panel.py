"""Does ganarch's quality score rank generators as an independent judge does?

Trains a panel of small generators on 16×16 digits with ganarch (different architectures and
step counts), adds control sets (held-out real, noise, independent pixels, memorised and
collapsed sets, checkerboarded and grey-background real images, replayed training images),
scores every one with ganarch's ``Evaluator`` and with the independent judge in
``tests/score_judge.py`` (which imports nothing from ``ganarch.score``), and prints a Markdown
table and the Spearman rank correlations between ganarch's quality and each judge metric.

    python bench/score_panel.py train            # trains what is not cached yet (CPU minutes)
    python bench/score_panel.py score            # scores everything; no training
    python bench/score_panel.py                  # both

Generated samples (and the samples of every evaluation point, for stability) are cached in
``$PANEL_DIR`` (default ``/tmp/ganarch-score-panel``), so re-scoring needs no retraining.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ganarch import dcgan_spec
from ganarch.data import load_dataset
from ganarch.score.stability import EXPLODING_LOSS
from ganarch.settings import RunSettings
from ganarch.training import fit

# The independent judge lives beside the tests that use it; it imports nothing of ganarch.score.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SIZE, WIDTH, BATCH, N = 16, 16, 64, 1000
EVALS = 5
PANEL_DIR = Path(os.environ.get("PANEL_DIR", "/tmp/ganarch-score-panel"))
FEATURE_CACHE = PANEL_DIR / "feature-cache"

#: name -> (dcgan_spec choices, steps). Different architectures of the DCGAN family and
#: different budgets, so quality spans the range from noise to legible, varied digits.
PANEL: dict[str, tuple[dict, int]] = {
    "dcgan-50": ({}, 50),
    "dcgan-150": ({}, 150),
    "dcgan-400": ({}, 400),
    "dcgan-800": ({}, 800),
    "dcgan-1600": ({}, 1600),
    "no-batchnorm-1600": ({"g_norm": "none", "d_norm": "none"}, 1600),
    "nearest-avgpool-100": ({"g_upsample": "nearest_conv", "d_downsample": "conv_avgpool"}, 100),
    "nearest-avgpool-400": ({"g_upsample": "nearest_conv", "d_downsample": "conv_avgpool"}, 400),
    "nearest-avgpool-1600": (
        {"g_upsample": "nearest_conv", "d_downsample": "conv_avgpool"},
        1600,
    ),
    "beta1-0.9-400": ({"beta1": 0.9}, 400),
    "dense-layers-400": ({"g_dense_layers": 1, "d_dense_layers": 1}, 400),
    "d-spectral-norm-800": ({"d_norm": "none", "d_wrap": "spectral_norm"}, 800),
    "pixel-shuffle-800": ({"g_upsample": "pixel_shuffle"}, 800),
    "elu-in-g-800": ({"g_activation": "elu"}, 800),
    "bilinear-800": ({"g_upsample": "bilinear_conv"}, 800),
}


def train_panel(names: list[str]) -> None:
    PANEL_DIR.mkdir(parents=True, exist_ok=True)
    data = load_dataset("digits", SIZE, 1)
    for name in names:
        path = PANEL_DIR / f"{name}.pt"
        if path.exists():
            continue
        choices, steps = PANEL[name]
        spec = dcgan_spec(SIZE, 1, width=WIDTH, batch_size=BATCH, **choices)
        snapshots: list[torch.Tensor] = []

        def keep(step: int, samples: torch.Tensor, snapshots=snapshots) -> dict:
            snapshots.append(samples.detach().cpu().clamp(-1, 1).half())
            return {}

        t0 = time.perf_counter()
        settings = RunSettings(
            steps=steps,
            seeds=(0,),
            device="cpu",
            eval_every=max(1, steps // EVALS),
            n_eval=N,
            progress=False,
            exploding_loss=EXPLODING_LOSS,  # the scorer's rule, as ganarch.train applies it
        )
        res = fit(spec, data, evaluate=keep, settings=settings)
        history = [
            {k: v for k, v in r.items() if isinstance(v, int | float | str | type(None))}
            for r in res.history
        ]
        torch.save(
            {
                "name": name,
                "steps": steps,
                "choices": choices,
                "snapshots": snapshots,
                "history": history,
                "diverged": res.diverged,
                "seconds": time.perf_counter() - t0,
            },
            path,
        )
        print(f"trained {name}: {time.perf_counter() - t0:.0f} s", flush=True)


def controls(ev) -> dict[str, torch.Tensor]:
    """The judge module's control sets, built from the evaluator's own splits."""
    import score_judge

    sets = score_judge.control_sets(
        ev.real_images.cpu().numpy(), ev.held_out_images.cpu().numpy(), N
    )
    return {f"ctl: {k}": torch.as_tensor(v, dtype=torch.float32) for k, v in sets.items()}


def spearman(a, b) -> float:
    """Spearman's rank correlation, ties given their average rank."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def score_panel() -> None:
    import score_judge

    from ganarch.score import Evaluator
    from ganarch.score.stability import stability

    data = load_dataset("digits", SIZE, 1)
    ev = Evaluator(data, device="cpu", cache_dir=FEATURE_CACHE)
    # The judge's reference: the evaluator's reference images (a subset of the training split;
    # the generators train on the whole dataset, held-out images included).
    judge = score_judge.Judge(ev.real_images.cpu().numpy(), ev.real_labels.cpu().numpy())
    rows, snapshots = [], []
    for name, images in controls(ev).items():
        # Held-out images stand in for new samples: their copies are checked against the
        # 80 % split only; the replay is checked against everything the GANs train on.
        against = "training" if name.endswith("replayed") else "train_split"
        m = ev.evaluate(images, copies_against=against)
        rows.append((name, ev.quality(m), None, m, judge.score(images.numpy())))
    for name in PANEL:
        path = PANEL_DIR / f"{name}.pt"
        if not path.exists():
            print(f"(not trained yet: {name})", file=sys.stderr)
            continue
        run = torch.load(path, weights_only=False)
        history = []
        m, verdict = {}, {}
        for rec, snap in zip(run["history"], run["snapshots"], strict=False):
            m = ev.evaluate(snap.float())
            history.append({**rec, "quality": ev.quality(m)})
            verdict = judge.score(snap.float().numpy())
            snapshots.append((f"{name}@{rec['step']}", history[-1]["quality"], None, m, verdict))
        stab = stability(history, diverged=run["diverged"])
        rows.append((name, history[-1]["quality"], stab["stability"], m, verdict))
    print_table(rows)
    # Every evaluation point of every run is a generator too: five times as many, from noise
    # to the best, as a check that the agreement does not hang on the fifteen final ones.
    print_spearman("every evaluation snapshot of the trained generators", snapshots)


def print_table(rows) -> None:
    from score_judge import DIRECTIONS as JUDGE

    keys = ["fid", "precision", "recall", "density", "coverage", "modes_hit"]
    keys += ["spectral_distance", "copy_fraction"]
    head = ["generator", "quality", "stability", *keys, *(f"judge {k}" for k in JUDGE)]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name, quality, stab, m, j in sorted(rows, key=lambda r: -r[1]):
        cells = [name, f"{quality:.3f}", "—" if stab is None else f"{stab:.2f}"]
        cells += [f"{m.get(k, float('nan')):.3g}" for k in keys]
        cells += [f"{j[k]:.3g}" for k in JUDGE]
        print("| " + " | ".join(cells) + " |")
    print()
    gens = [i for i, r in enumerate(rows) if not r[0].startswith("ctl:")]
    # Two controls the judge cannot see by design are left out of the second set: it works on
    # raw pixels, so it marks a real digit on a grey background down for its background (which
    # ganarch deliberately ignores), and it compares with the training images themselves, so a
    # replay of them looks perfect to it (ganarch's copy check scores it 0).
    blind = ("ctl: real on grey background", "ctl: training images replayed")
    seen = [i for i, r in enumerate(rows) if r[0] not in blind]
    print_spearman("trained generators", [rows[i] for i in gens])
    print_spearman(
        "generators and controls, without the grey and replay controls", [rows[i] for i in seen]
    )
    print_spearman("every row", rows)


def print_spearman(label: str, rows) -> None:
    """Spearman between quality and each judge metric (made higher-is-better), and the mean
    of the judge's three ranks."""
    from scipy.stats import rankdata
    from score_judge import DIRECTIONS

    q = [r[1] for r in rows]
    judged = {k: [sign * r[4][k] for r in rows] for k, sign in DIRECTIONS.items()}
    consensus = np.mean([rankdata(v) for v in judged.values()], axis=0)
    parts = [f"{k} {spearman(q, v):+.3f}" for k, v in judged.items()]
    parts.append(f"mean judge rank {spearman(q, consensus):+.3f}")
    print(f"Spearman(quality, judge), {label} (n={len(rows)}): " + ", ".join(parts))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=["train", "score", "all"], default="all")
    p.add_argument("--only", nargs="*", default=None, help="panel names to train")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()
    if args.what in ("train", "all"):
        train_panel(args.only or list(PANEL))
    if args.what in ("score", "all"):
        score_panel()
    print(f"wall time {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
