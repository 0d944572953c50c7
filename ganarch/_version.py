"""The package version, on the lowest floor so every layer can record it without importing
the ``ganarch`` façade."""

__version__ = "0.1.0"
