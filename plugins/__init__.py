"""ganarch's built-in plugins: registered through the ``ganarch`` entry-point group like any other."""

from ganarch_plugins.blocks import ganarch_register_block_kinds, ganarch_register_blocks
from ganarch_plugins.datasets import ganarch_register_datasets
from ganarch_plugins.metrics import ganarch_register_metrics
from ganarch_plugins.search import ganarch_register_pruners, ganarch_register_samplers
from ganarch_plugins.templates import ganarch_register_templates

__all__ = [
    "ganarch_register_block_kinds",
    "ganarch_register_blocks",
    "ganarch_register_datasets",
    "ganarch_register_metrics",
    "ganarch_register_pruners",
    "ganarch_register_samplers",
    "ganarch_register_templates",
]
