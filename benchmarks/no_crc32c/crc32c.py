"""Put this directory first on PYTHONPATH to hide the C `crc32c` package from kafka-python, which then
falls back to its pure-Python CRC-32C (the "before" of the crc32c change in BENCHMARKS.md)."""

raise ImportError("crc32c hidden for a before/after benchmark")
