"""The package's version (pyproject.toml reads it from here; ``funasr_nano.__version__`` re-exports it)."""

__version__ = "0.2.0"
