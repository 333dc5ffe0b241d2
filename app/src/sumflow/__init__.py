"""sumflow: a gRPC adder and a REST accumulator that keep an exactly-once running total over Kafka."""

from importlib.metadata import version

# The one source is app/pyproject.toml's [project] version; the installed metadata carries it.
__version__ = version("sumflow")
