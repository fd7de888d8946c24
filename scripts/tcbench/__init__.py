"""tracecalc benchmarks; scripts/bench.py is the entry point (see its docstring)."""
