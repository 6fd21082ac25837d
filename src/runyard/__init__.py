"""runyard: run data operations and watch them run."""

__version__ = "0.1.0"
