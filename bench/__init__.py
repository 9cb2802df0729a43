"""Benchmarks of localinfer's runtime core against a bare server and its peers.

Scripts, not tests: each module with a ``main`` runs with ``python -m bench.<name>``,
prints markdown tables and writes JSON under ``bench/results/`` (see ``README.md``).
"""
