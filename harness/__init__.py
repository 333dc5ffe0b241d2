"""The harness: real Kafka brokers and real sumflow processes on loopback, for the tests, the
benchmarks and `make run` (not part of the app wheel). See docs/harness.md.

    kafka       KRaft brokers/clusters (KafkaBroker, KafkaCluster), topics; `python -m harness.kafka run`
    env         the one builder of a service's environment (adder_env, accumulator_env, process_env)
    processes   ServiceProcess -> AdderProcess, AccumulatorProcess, CommandProcess
    stack       sumflow_stack: topics + both services, stopped on exit
    local       what `make run` starts (`python -m harness.local`)
    driver      the request driver: RequestStream, plan_requests, KillGate
    faults      fault runs and their verdicts (FaultRun, CrashRun, judge, the summary table)
    secure_broker, pki  a SASL_SSL/SCRAM/ACL broker and a throwaway CA (security tests)
    grpc_client, http_client, topics, ports, prometheus: small clients and helpers

The modules `make run` imports (local, kafka, env, processes, ports, the two clients) need only the
app's runtime dependencies, so `.venv-run` can run them; prometheus needs PyYAML (a test dependency).
"""
