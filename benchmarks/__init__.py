"""sumflow benchmarks: `make bench` (python -m benchmarks.run). Never part of `make test`."""
