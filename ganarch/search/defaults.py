"""Names the command line shows in its help, kept apart from the storage code so that
``ganarch --help`` need not import Optuna."""

#: The embedded study storage in the working directory (an Optuna journal file).
DEFAULT_STORAGE = "ganarch.journal"
#: The environment variable naming the storage when ``--storage`` is not given.
STORAGE_ENV = "GANARCH_STORAGE"
#: The designs ``ganarch.search.design`` builds (fixed two-level designs, not guesses); the
#: built-in plugin registers each as a sampler. Samplers and pruners are registered by
#: plugins (``ganarch.search.strategies``), so their names are not listed here.
DESIGNS = ("fractional", "fractional32", "factorial")
#: Objective names of ``ganarch search``.
OBJECTIVES = ("score", "multi")
