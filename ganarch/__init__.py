"""ganarch: search the architecture space of DCGAN-style GANs.

Public API::

    spec = ganarch.dcgan_spec(image_size=32, channels=1)
    G, D = spec.build()
"""

from ganarch.errors import GanarchError, PluginError, SpecError
from ganarch.hookspecs import hookimpl
from ganarch.plugins import register as register_plugin
from ganarch.plugins import unregister as unregister_plugin
from ganarch.registry import BLOCK_KINDS, BlockInfo, Shape, blocks
from ganarch.spec import GANSpec, LayerSpec, TrainingSpec, load_spec
from ganarch.templates import PAPER_CHOICES, dcgan_spec

__version__ = "0.1.0"

__all__ = [
    "BLOCK_KINDS",
    "PAPER_CHOICES",
    "BlockInfo",
    "GANSpec",
    "GanarchError",
    "LayerSpec",
    "PluginError",
    "Shape",
    "SpecError",
    "TrainingSpec",
    "__version__",
    "blocks",
    "dcgan_spec",
    "hookimpl",
    "load_spec",
    "register_plugin",
    "unregister_plugin",
]
