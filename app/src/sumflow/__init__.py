"""sumflow: a gRPC adder and a REST accumulator that keep an exactly-once running total over Kafka."""

__version__ = "0.1.0"
