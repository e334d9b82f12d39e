"""The parts of bench/bench_scaleout.py."""
