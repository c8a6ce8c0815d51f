"""Benchmarking: ``visionrt bench`` and the scripts in ``benchmarks/``.

Sits above the runtime and the trainer: it measures ``visionrt.runtime`` classifiers and, for the
torch baseline only (``visionrt.bench.baseline``), rebuilds the PyTorch model with the trainer.
Nothing in runtime, exporter or trainer imports it. Importing ``visionrt.bench.run`` loads no torch.

Modules: ``run`` (BenchConfig, run_bench, render_table), ``results`` (rows and report),
``inputs`` (random batches, file cycling), ``timing`` (fixed-duration loops), ``stats``
(percentiles, peak RSS), ``environment`` (the machine), ``table`` and ``plot`` (rich table, PNG),
``baseline`` (PyTorch eager rows).
"""
