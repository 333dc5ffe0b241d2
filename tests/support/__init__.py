"""Shared test helpers: real Kafka broker harness, service subprocesses, gRPC/HTTP clients."""
