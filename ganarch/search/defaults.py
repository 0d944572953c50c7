"""Names the command line shows in its help, kept apart from the storage code so that
``ganarch --help`` need not import Optuna."""

#: The embedded study storage in the working directory (an Optuna journal file).
DEFAULT_STORAGE = "ganarch.journal"
#: The environment variable naming the storage when ``--storage`` is not given.
STORAGE_ENV = "GANARCH_STORAGE"
#: Designed experiments (``ganarch.search.design``): fixed two-level designs, not guesses.
DESIGNS = ("fractional", "fractional32", "factorial")
#: Sampler, pruner and objective names of ``ganarch search``.
SAMPLERS = ("tpe", "random", "grid", "qmc", "nsga2", *DESIGNS)
PRUNERS = ("hyperband", "median", "none")
OBJECTIVES = ("score", "multi")
