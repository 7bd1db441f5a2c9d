"""Benchmarks: comparisons against a baseline measured in the same run, printed as ratios.

They are reports, not tests: a missed target is printed, never turned into a failure. Run all
of them with ``python -m benchmarks`` (or ``make bench``), one with
``python -m benchmarks refresh``. Every ``benchmarks/bench_<name>.py`` module exposes
``main() -> int`` and is picked up by name.
"""
