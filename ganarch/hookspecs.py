"""Deprecated name of :mod:`ganarch.plugin.hookspecs` (moved in 0.x; kept so that plugins
written as ``from ganarch.hookspecs import hookimpl`` keep loading). Prefer ``ganarch.hookimpl``.
Importing it warns once and makes ``ganarch.hookspecs`` the same module object as
``ganarch.plugin.hookspecs``."""

import sys
import warnings

from ganarch.plugin import hookspecs

warnings.warn(
    "ganarch.hookspecs moved to ganarch.plugin.hookspecs (plugins: use ganarch.hookimpl); "
    "the old name will be removed",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = hookspecs
