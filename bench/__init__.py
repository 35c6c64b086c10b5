"""Benchmarks of asess against its peers, measured side by side in one run.

``python -m bench`` runs every scenario (codecs, the full request cycle, store
cycles at rising concurrency, and the event-loop lag each one causes), prints a
table, writes ``bench/results/<timestamp>.json`` and a PNG chart, and
regenerates the results section of ``BENCHMARKS.md``. ``--quick`` runs the same
code paths briefly, as a smoke test. Each figure is compared only with figures
taken in the same run, on the same machine.
"""
