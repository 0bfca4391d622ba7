"""Benchmark harness: Image Router beside the provider simulator, LiteLLM and Portkey.

Run it with `make bench` (or `.venv/bin/python -m bench --help`). The figures and
the exact commands are recorded in docs/benchmarks.md.
"""
