"""ganarch: search the architecture space of DCGAN-style GANs.

Public API::

    spec = ganarch.dcgan_spec(image_size=32, channels=1)
    G, D = spec.build()
    study = ganarch.search("quick", data="digits", trials=16)  # an Optuna study
    study = ganarch.load_study("quick-digits")
"""

from ganarch._lazy import lazy_getattr
from ganarch._version import __version__
from ganarch.builder import GANSpec, load_spec
from ganarch.errors import GanarchError, PluginError, SpecError
from ganarch.plugin import hookimpl
from ganarch.plugin.manager import register as register_plugin
from ganarch.plugin.manager import unregister as unregister_plugin
from ganarch.registry import BLOCK_KINDS, BlockInfo, Shape, blocks
from ganarch.spec import LayerSpec, TrainingSpec
from ganarch.templates import PAPER_CHOICES, dcgan_spec

# Heavier layers load on first use, so `import ganarch` stays quick and never imports optuna.
_LAZY = {
    "load_dataset": "ganarch.data",
    "ImageDataset": "ganarch.data",
    "Evaluator": "ganarch.score",
    "train": "ganarch.run",
    "RunSettings": "ganarch.settings",
    "train_seeds": "ganarch.run",
    "TrainResult": "ganarch.run",
    "best_spec": "ganarch.search.results",
    "rules_table": "ganarch.analysis",
    "ablate": "ganarch.analysis",
    "write_report": "ganarch.analysis",
    "load_study": "ganarch.search.api",
}


_lazy = lazy_getattr(__name__, globals(), _LAZY)


def __getattr__(name: str):
    if name == "search":  # the subpackage, callable: ganarch.search(...) runs a search
        import importlib

        return importlib.import_module("ganarch.search")
    return _lazy(name)


__all__ = [
    "BLOCK_KINDS",
    "PAPER_CHOICES",
    "BlockInfo",
    "Evaluator",
    "GANSpec",
    "GanarchError",
    "ImageDataset",
    "LayerSpec",
    "PluginError",
    "RunSettings",
    "Shape",
    "SpecError",
    "TrainResult",
    "TrainingSpec",
    "__version__",
    "ablate",
    "best_spec",
    "blocks",
    "dcgan_spec",
    "hookimpl",
    "load_dataset",
    "load_spec",
    "load_study",
    "register_plugin",
    "rules_table",
    "search",
    "train",
    "train_seeds",
    "unregister_plugin",
    "write_report",
]
