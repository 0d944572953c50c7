"""ganarch's built-in plugins: registered through the ``ganarch`` entry-point group like any other."""

from ganarch_plugins.blocks import ganarch_register_blocks

__all__ = ["ganarch_register_blocks"]
