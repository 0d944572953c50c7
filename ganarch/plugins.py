"""Deprecated name of :mod:`ganarch.plugin.manager` (moved in 0.x; kept so that plugins and
notebooks written against ``ganarch.plugins`` keep working). Importing it warns once and makes
``ganarch.plugins`` *the same module object* as ``ganarch.plugin.manager``, so its state
(``reset()``, ``register()``, ``DISABLE_ENV``, monkeypatches) is shared, not copied."""

import sys
import warnings

from ganarch.plugin import manager

warnings.warn(
    "ganarch.plugins moved to ganarch.plugin.manager; the old name will be removed",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = manager
