"""Benchmarks of the engine against esper, plain numpy, scipy's cKDTree and a bare numba kernel.

``python bench/run.py [--quick] [--json]`` runs the whole report in one process;
``pytest bench --benchmark-enable`` runs the pytest-benchmark cases. See ``bench/run.py``.
"""
