"""Names the command line shows in its help, kept apart from the storage code so that
``ganarch --help`` need not import Optuna."""

#: The embedded study storage in the working directory (an Optuna journal file).
DEFAULT_STORAGE = "ganarch.journal"
#: The environment variable naming the storage when ``--storage`` is not given.
STORAGE_ENV = "GANARCH_STORAGE"
#: The designs ``ganarch.search.design`` builds (fixed two-level designs, not guesses), each
#: with what it is; the built-in plugin registers each as a sampler with this description.
#: Other samplers and pruners are registered by plugins (``ganarch.search.strategies``), so
#: their names are not listed here.
DESIGN_DESCRIPTIONS = {
    "fractional": "16-run two-level design over the space's rule toggles (resolution IV or better)",
    "fractional32": "32-run two-level design (fewer interactions share an alias chain)",
    "factorial": "the full 2^k two-level design (every combination)",
}
#: The designs' names.
DESIGNS = tuple(DESIGN_DESCRIPTIONS)
#: Objective names of ``ganarch search``.
OBJECTIVES = ("score", "multi")
