"""deocc-bench: a benchmark harness for face de-occlusion.

Public API for method authors (kept torch-free at import time):
``bench.hookimpl``, ``bench.method`` (MethodSpec, Method, MethodContext, Restoration),
``bench.data.types`` (FaceSet, TrainData), ``bench.training`` and ``bench.nn``; ``bench.errors`` (``BenchError``,
the root of every error whose one line the CLI prints).
"""

from bench.hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
__version__ = "0.1.0"
