"""The plugin layer: hook specs, the plugin manager and one registry mechanism.

- :mod:`ganarch.plugin.hookspecs`: every hook a plugin can implement (``hookimpl``).
- :mod:`ganarch.plugin.manager`: loading built-in and third-party plugins, ``register``.
- :mod:`ganarch.plugin.registry`: :class:`Registry` and :class:`Registrar`, which each kind of
  registered thing (blocks, datasets, metrics, templates, samplers, pruners) uses.

This is the lowest floor with :mod:`ganarch.errors`: it imports nothing else of ganarch.
"""

from ganarch.plugin.hookspecs import hookimpl
from ganarch.plugin.registry import Registrar, Registry, duplicate_message, plugin_code

__all__ = ["Registrar", "Registry", "duplicate_message", "hookimpl", "plugin_code"]
