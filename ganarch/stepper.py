"""How a training step runs: the step settings, and a runner that on CUDA captures the whole
step (D passes, G pass, both Adam updates, batch and noise draws) once in a CUDA graph and
replays it, falling back to eager execution, with the reason, when capture fails.

On a GPU the DCGAN-sized step is bound by kernel launches, not arithmetic: one graph replay
per step replaces a few hundred launches. Nothing here changes the CPU path: off CUDA the
runner calls the step as it is.

Settings come from :class:`StepOptions` (``fit(..., options=...)``), with the environment as
the default so a command-line run can switch them without new flags:
``GANARCH_PRECISION=bf16``, ``GANARCH_CHANNELS_LAST=1``, ``GANARCH_CUDA_GRAPH=0``,
``GANARCH_FUSED_SEEDS=on|off|auto``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ganarch.errors import GanarchError

__all__ = ["PRECISIONS", "StepOptions", "Stepper", "graph_blocker"]

PRECISIONS = ("float32", "bf16")
_FUSED = ("auto", "on", "off")

#: Why the first failed capture of this process failed. A failed capture can leave torch's
#: capture bookkeeping half torn down (the allocator's pool, a generator's capture state),
#: so no later Stepper in the process tries again: it runs eagerly and says why.
_FAILED_CAPTURE: str | None = None


@dataclass(frozen=True)
class StepOptions:
    """How the step loop runs (not what it computes: the spec's training settings do that).

    :param precision: ``"float32"`` (default) or ``"bf16"`` autocast on CUDA. Measured on an
        H200 (issue 8): at DCGAN sizes bf16 + channels_last was *slower* than float32 eager
        (8.77 vs 6.56 ms per step), the step being launch-bound; so float32 is the default.
        Ignored off CUDA (the CPU path stays float32, bit for bit reproducible).
    :param channels_last: NHWC memory layout on CUDA (off by default, for the same reason).
    :param cuda_graph: capture the step in a CUDA graph on CUDA (default on; off CUDA unused).
    :param fused_seeds: ``"auto"`` (fused on CUDA, sequential elsewhere: see BENCHMARKS.md),
        ``"on"`` or ``"off"``: train the K seeds of ``train_seeds`` as one stacked network.
    :param warmup_steps: eager steps on a side stream before capture (cuDNN autotuning,
        Adam's state and the allocator settle there); they are real training steps.
    """

    precision: str = "float32"
    channels_last: bool = False
    cuda_graph: bool = True
    fused_seeds: str = "auto"
    warmup_steps: int = 3

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise GanarchError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.fused_seeds not in _FUSED:
            raise GanarchError(
                f"fused_seeds must be one of {', '.join(_FUSED)}, got {self.fused_seeds!r}"
            )
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise GanarchError(f"warmup_steps must be an integer, got {self.warmup_steps!r}")
        if self.warmup_steps < 1:
            raise GanarchError(f"warmup_steps must be at least 1, got {self.warmup_steps}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StepOptions:
        """The defaults, overridden by ``GANARCH_PRECISION``, ``GANARCH_CHANNELS_LAST``,
        ``GANARCH_CUDA_GRAPH`` and ``GANARCH_FUSED_SEEDS`` where set."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        if env.get("GANARCH_PRECISION"):
            changes["precision"] = env["GANARCH_PRECISION"].strip().lower()
        for name, field in (
            ("GANARCH_CHANNELS_LAST", "channels_last"),
            ("GANARCH_CUDA_GRAPH", "cuda_graph"),
        ):
            if env.get(name):
                changes[field] = _flag(name, env[name])
        if env.get("GANARCH_FUSED_SEEDS"):
            changes["fused_seeds"] = env["GANARCH_FUSED_SEEDS"].strip().lower()
        return replace(cls(), **changes) if changes else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def autocast(self, device: torch.device) -> Callable[[], Any]:
        """A context factory for the forward passes: bf16 autocast on CUDA when asked for.

        The autocast weight cache is off: a cached cast made during capture would be reused
        stale by every replay (PyTorch's CUDA-graph notes require ``cache_enabled=False``).
        """
        if device.type == "cuda" and self.precision == "bf16":
            return lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return nullcontext

    def uses_channels_last(self, device: torch.device) -> bool:
        return device.type == "cuda" and self.channels_last


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise GanarchError(f"{name} must be 1 or 0, got {value!r}")


def graph_blocker(device: torch.device, options: StepOptions) -> str | None:
    """Why the step will not be captured in a CUDA graph on ``device`` (``None``: it will be
    tried; capture itself may still fail and fall back, see :class:`Stepper`)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this run is on {device.type})"
    if not options.cuda_graph:
        return "CUDA graph capture is turned off (cuda_graph=False or GANARCH_CUDA_GRAPH=0)"
    if not hasattr(torch.cuda, "CUDAGraph"):
        return f"this torch ({torch.__version__}) has no torch.cuda.CUDAGraph"
    if _FAILED_CAPTURE is not None:  # so the run's Adam is not made capturable for nothing
        return f"an earlier capture failed in this process ({_FAILED_CAPTURE})"
    return None


class Stepper:
    """Calls ``step()`` once per training step: eagerly, or on CUDA through a CUDA graph.

    With a graph, the first ``warmup_steps`` calls run eagerly on a side stream, the next one
    captures the step and replays it (capture runs nothing), and every later call is one
    replay. ``step`` must read and write only tensors that live as long as the run
    (parameters, optimizer state, the dataset, running sums): replays reuse their addresses.
    Random draws must use the default CUDA generator or one of ``generators`` (registered
    with the graph so each replay draws fresh numbers).

    Warm-up steps after the first run with CUDA's sync debug mode on: a step that makes
    the host wait (``.item()``, a copy to the CPU) cannot be captured, so it is never tried
    and the run goes on eagerly. If capture itself raises, the run goes on eagerly from where
    it is (warm-up steps already trained stay trained) and no Stepper of the process tries to
    capture after that, not even one built before the failure and still warming up.
    :attr:`reason` says why (the first exception of a chain), and
    :attr:`mode` is ``"graph"`` or ``"eager"``.
    """

    def __init__(
        self,
        step: Callable[[], None],
        device: torch.device,
        options: StepOptions,
        *,
        generators: Sequence[torch.Generator] = (),
        capture: Callable[[Callable[[], None], Sequence[torch.Generator]], Any] | None = None,
    ) -> None:
        self.step = step
        self.generators = tuple(generators)
        self.warmup = options.warmup_steps
        self.reason = graph_blocker(device, options)
        if self.reason is None and _FAILED_CAPTURE is not None:
            self.reason = f"an earlier capture failed in this process ({_FAILED_CAPTURE})"
        self.mode = "eager" if self.reason else "graph"
        self._capture = capture or _capture_cuda_graph
        self._graph: Any = None
        self._warmed = 0
        self.device = device
        self._stream = torch.cuda.Stream(device=device) if self.mode == "graph" else None

    def __call__(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        elif self.mode == "eager":
            self.step()
        elif self._warmed < self.warmup:
            self._warm_up()
        else:
            self._capture_and_replay()

    def record(self) -> dict[str, Any]:
        """What the run's metrics record about how its step ran."""
        if self.mode == "graph" and self._graph is None:  # the run ended inside warm-up
            return {
                "step": "eager",
                "reason": f"the run ended before capture ({self._warmed} warm-up steps)",
            }
        return {"step": self.mode, "reason": self.reason}

    def _warm_up(self) -> None:
        # Side stream, as PyTorch's whole-network capture recipe: the warm-up's lazy
        # allocations and autotuning do not land on the stream that will be captured.
        # The first warm-up step autotunes cuDNN and allocates, so host syncs are looked for
        # from the second on.
        with torch.cuda.device(self.device):
            stream, current = self._stream, torch.cuda.current_stream()
            stream.wait_stream(current)
            with torch.cuda.stream(stream), _host_syncs(self._checks_syncs()) as syncs:
                self.step()
            current.wait_stream(stream)
        self._warmed += 1
        if syncs:  # this step ran whole; the next ones run eagerly, uncaptured
            self.mode = "eager"
            self.reason = f"the step makes the host wait, so it cannot be captured: {syncs[0]}"

    def _checks_syncs(self) -> bool:
        return self._warmed > 0 and self.device.type == "cuda"

    def _capture_and_replay(self) -> None:
        global _FAILED_CAPTURE
        if _FAILED_CAPTURE is not None:  # another Stepper's capture failed after this was built
            self.fall_back(f"an earlier capture failed in this process ({_FAILED_CAPTURE})")
            return
        try:
            # on the run's GPU (not device 0) and on the Stepper's own stream, which the
            # ``with`` always leaves, whatever capture raises
            with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
                self._graph = self._capture(self.step, self.generators)
        except Exception as exc:  # any failure to capture: run on, eagerly, and say why
            root = _root_cause(exc)
            _FAILED_CAPTURE = f"{type(root).__name__}: {_first_line(root)}"
            reason = f"capture failed: {_FAILED_CAPTURE}"
            if self.device.type == "cuda":
                try:
                    self._release_generators()
                except Exception as gen_exc:  # the eager step may then fail on a draw
                    reason += f" (generators not reset: {type(gen_exc).__name__})"
            self.fall_back(reason)
            return
        self._graph.replay()  # capture recorded the step without running it

    def _release_generators(self) -> None:
        """A capture that fails inside the step ends before torch's ``capture_epilogue``, so
        every generator it captured (the run's and the device's default) stays marked as
        capturing, and its next eager draw raises "Offset increment outside graph capture".
        Give each a fresh state object with the same seed and offset."""
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        for gen in (*self.generators, torch.cuda.default_generators[index]):
            fresh = torch.Generator(device=gen.device)
            fresh.set_state(gen.get_state())
            gen.graphsafe_set_state(fresh)

    def fall_back(self, reason: str) -> None:
        """Run eagerly from now on (this step included) and record ``reason``."""
        self._graph = None
        self.mode, self.reason = "eager", reason
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.step()


@contextmanager
def _host_syncs(check: bool) -> Iterator[list[str]]:
    """Collect the host syncs of the block (CUDA's sync debug mode, ``"warn"``: the step
    still runs to its end, so nothing is half done). Other warnings are passed on."""
    found: list[str] = []
    if not check:
        yield found
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(before)
    for w in caught:
        text = str(w.message)
        if "synchronizing cuda operation" in text.lower():
            found.append(_first_line(w.message))  # type: ignore[arg-type]
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _root_cause(exc: BaseException) -> BaseException:
    """The first exception of a chain: a capture that fails inside the step fails again at
    ``capture_end`` ("operation failed due to a previous error"); the first one says why."""
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def _first_line(exc: BaseException | Warning) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _capture_cuda_graph(step: Callable[[], None], generators: Sequence[torch.Generator]):
    """Record ``step`` in a new CUDA graph on the current stream (the Stepper's own; nothing
    runs during capture). ``capture_end`` runs whatever the step raises, so torch's capture
    state is closed as far as torch allows."""
    graph = torch.cuda.CUDAGraph()
    for gen in generators:
        # A non-default generator must be registered before capture, or capture refuses it;
        # registered, each replay advances its offset and draws new numbers.
        graph.register_generator_state(gen)
    torch.cuda.synchronize()  # the steps so far finish before capture (torch.cuda.graph does)
    graph.capture_begin()
    try:
        step()
    finally:
        graph.capture_end()
    return graph
