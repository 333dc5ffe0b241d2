"""Load generation, in one place: the k6 scripts (grpc.js, rest.js, lib/) a user runs against a
deployment, and the Python side that drives load for `make test-load` and `make bench`.

    k6          run the k6 scripts with the venv's k6 (K6Run, run_k6, inspect)
    generators  ghz (gRPC) and wrk (HTTP) runs parsed into LoadResult
    freshness   the reply -> visible-in-/api/total probe
    backlog     a pre-produced event backlog (BacklogProducer.java, or kafka-python)

See docs/load.md.
"""
