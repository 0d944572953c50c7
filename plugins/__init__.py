"""ganarch's built-in plugins: registered through the ``ganarch`` entry-point group like any other."""

from ganarch_plugins.blocks import ganarch_register_blocks
from ganarch_plugins.datasets import ganarch_register_datasets

__all__ = ["ganarch_register_blocks", "ganarch_register_datasets"]
