"""A benchmark of LLM-for-recommendation paradigms (see README.md and docs/).

Importing this package is cheap: adapters (and torch) load only when a method is used.
"""

from benchmark.registry import register

__all__ = ["register"]
__version__ = "0.1.0"
