"""hmmrnn's benchmarks: `python -m benchmarks` runs them all (see suite.py)."""
