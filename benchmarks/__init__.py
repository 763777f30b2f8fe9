"""cachehub's benchmark suite: ``python -m benchmarks [--quick] [--only ...] [--out DIR]``.

Compares cachehub's providers with raw clients and peer libraries on the same backend
instance and writes ``docs/benchmarks.md`` (and ``docs/benchmarks.png`` with matplotlib).
"""

from .harness import Config, Section
from .suite import SECTIONS, SuiteResult, run_suite

__all__ = ["SECTIONS", "Config", "Section", "SuiteResult", "run_suite"]
