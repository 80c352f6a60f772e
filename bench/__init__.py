"""kikimimi's benchmark: the pipeline against a direct engine connection, side by side.

`python -m bench` runs the full ramp; `python -m bench --quick` one step of 200 streams.
See docs/benchmarks.md for what is measured and how to read the results.
"""
