"""The ``train`` command: train one spec on one dataset and write a run directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ganarch.cli._common import fail, note, parse_value, print_json, print_table, template_spec
from ganarch.errors import GanarchError, HostError

__all__ = ["DEFAULT_STEPS", "register", "train_command"]


def _check_out(out: Path) -> None:
    """``--out`` must be a folder that can be made here: a probe that leaves nothing behind
    (``/proc/x`` or ``a-file/sub`` fail now, not after the data is loaded)."""
    made = [p for p in (out, *out.parents) if not p.exists()]
    for folder in out.parents:
        if folder.exists() and not folder.is_dir():
            fail(f"--out: {folder} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out: cannot create {out}: {exc.strerror or exc}")
    for folder in made:  # deepest first: the run creates them again
        try:
            folder.rmdir()
        except OSError:
            break


#: Default generator updates: ``dcgan:32 --width 32`` at batch 128 on digits reaches FID ~6
#: on the digits features (quality ~0.7) in a few minutes on a 2-core CPU.
DEFAULT_STEPS = 800


def _overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set expects KEY=VALUE (e.g. lr_d=1e-4), got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def train_command(
    spec: str = typer.Argument(
        ...,
        help="A spec file (.json/.toml/.yaml), or 'TEMPLATE[:SIZE]' for a registered template, "
        "e.g. 'dcgan:32' for the paper's DCGAN (SIZE default 64; `ganarch templates` lists them).",
    ),
    data: str = typer.Option("digits", "--data", "-d", help="Dataset: NAME or NAME:ARG."),
    steps: int = typer.Option(DEFAULT_STEPS, "--steps", "-n", help="Generator updates."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory (default: runs/train-DATE-TIME)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds weights, batches and noise."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    eval_every: int | None = typer.Option(
        None, "--eval-every", help="Evaluate every K steps (default: 5 evaluations)."
    ),
    width: int | None = typer.Option(
        None,
        "--width",
        help="Template only: D's first channel count (default the paper's 64; 32 trains "
        "about 3× faster on a CPU).",
    ),
    channels: int | None = typer.Option(
        None, "--channels", help="Template only: 1 or 3 (default: the dataset's own)."
    ),
    settings: list[str] = typer.Option(
        [], "--set", help="Override a training setting, e.g. --set lr_d=1e-4 (repeatable)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the files of an earlier run in --out."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics JSON to stdout."),
) -> None:
    """Train a spec on a dataset; write samples, curves, checkpoints and metrics to --out.

    Example: ganarch train dcgan:32 --width 32 --data digits --steps 800 --out runs/digits
    """
    if steps < 1:
        fail(f"--steps must be at least 1, got {steps}")
    if eval_every is not None and eval_every < 1:
        fail(f"--eval-every must be at least 1, got {eval_every}")
    if width is not None and width < 1:
        fail(f"--width must be at least 1, got {width}")
    if channels is not None and channels not in (1, 3):
        fail(f"--channels must be 1 or 3, got {channels}")
    if out is None:
        out = Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        fail(f"{out} already exists and is not empty; choose a new --out or pass --overwrite")
    _check_out(out)
    training = _overrides(settings)
    gan = template_spec(spec, width=width, channels=channels, data=data)
    if training:
        gan = gan.replace(training=training)  # validated here: a bad key is bad input

    from ganarch.run import train

    try:
        result = train(
            gan,
            data,
            steps,
            seed=seed,
            device=device,
            out_dir=out,
            overwrite=overwrite,
            eval_every=eval_every,
            progress=not quiet,
        )
    except OSError as exc:  # a full disk, a folder turned read-only: the machine, not a bug
        name = exc.filename
        if isinstance(exc, PermissionError | FileNotFoundError) and name and not _under(name, out):
            # an input the user named (a data folder they cannot read): bad input
            raise GanarchError(f"cannot read {name}: {exc.strerror or exc}") from None
        where = f" writing {name}" if name else ""
        raise HostError(f"training stopped: {exc.strerror or exc}{where}") from exc
    if result.diverged:
        note(f"warning: training diverged ({result.failure}) at step {result.steps_done}")
    if as_json:
        print_json(json.loads((out / "metrics.json").read_text()))
        return
    note(f"{spec} on {data}: {result.steps_done} steps, seed {seed}, {result.device}")
    t = Table()
    t.add_column("metric", style="bold", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    for key in ("objective", "quality", "stability", "diverged"):
        t.add_row(key, _fmt(getattr(result, key)))
    for key, value in result.metrics.items():
        if key != "quality" and isinstance(value, int | float | bool):
            t.add_row(key, _fmt(value))
    comps = result.stability_components
    for key in ("learned", "saturation", "oscillation", "gap"):
        t.add_row(f"stability.{key}", _fmt(comps.get(key)))
    t.add_row("seconds", f"{result.seconds:.1f}")
    print_table(t)
    note(f"run written to {out}/ (samples.png, curves.png, metrics.json, spec.json, *.pt)")


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(train_command)


def _under(name: str | bytes, folder: Path) -> bool:
    """Whether file ``name`` lies in ``folder`` (the run's output: a failure there is the
    machine's)."""
    try:
        Path(os.fsdecode(name)).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True
