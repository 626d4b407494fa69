"""The wan-exporter performance suite: every figure of issue 9, measured side by side with its reference.

Run it with ``python3 -m benchmarks run --out bench-results/`` (see BENCHMARKS.md). Each item
module exposes ``run(ctx) -> ItemResult``; :mod:`benchmarks.report` renders BENCHMARKS.md from
the results. Figures are ratios against a reference measured in the same run, because the
machines these run on are shared and noisy.
"""
