"""The benchmark: the paper's experiment as one call (``tans bench``).

>>> from tans.bench import BenchConfig, quick_config, run_bench
>>> run = run_bench(quick_config(), "bench-quick")          # doctest: +SKIP
>>> run.results["summary"]["searcher"]["1"]["regret"]       # doctest: +SKIP
"""

from tans.bench.config import FULL_CONFIG, BenchConfig, quick_config, resolve_budget
from tans.bench.methods import Method, MethodContext, Ranking, get_method, list_methods
from tans.bench.metrics import TAU_CONVENTIONS, epochs_to_reach, regret_points, rel_at_k, weighted_tau
from tans.bench.protocol import BenchRun, run_bench
from tans.bench.report import write_report

__all__ = [
    "FULL_CONFIG",
    "TAU_CONVENTIONS",
    "BenchConfig",
    "BenchRun",
    "Method",
    "MethodContext",
    "Ranking",
    "epochs_to_reach",
    "get_method",
    "list_methods",
    "quick_config",
    "regret_points",
    "rel_at_k",
    "resolve_budget",
    "run_bench",
    "weighted_tau",
    "write_report",
]
