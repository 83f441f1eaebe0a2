# Concert ticketing service. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/concert
BIND_ADDR ?= 127.0.0.1:8080
export DATABASE_URL BIND_ADDR

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/concert
DEBUG_BIN := $(TARGET_DIR)/debug/concert

.PHONY: help run run-memory test test-deploy test-rust test-browser test-api lint check-domain-deps fmt tools build bench bench-position db-up redis-up clean-test-dbs

help: ## List the targets
	@awk -F':.*## ' '/^[a-zA-Z_-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

tools: ## Install rustfmt and clippy if this toolchain lacks them
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt

db-up: ## Start the local PostgreSQL 15 if it is not accepting connections
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect 15 main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not come up" >&2; exit 1

redis-up: ## Start the local Redis if it does not answer
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.2; done; echo "Redis did not come up" >&2; exit 1

build: ## Build the release binary (target/release/concert)
	$(CARGO) build --release -p app --bin concert

run: build ## Serve on 127.0.0.1:8080 with the demo catalogue: PostgreSQL if it can be reached or started, else in memory
	@$(MAKE) -s db-up >/dev/null 2>&1 || true
	@if $(BIN) seed-demo 2>/dev/null; then \
		exec $(BIN) serve; \
	else \
		echo "No PostgreSQL could be reached at DATABASE_URL: serving the demo from memory (nothing is kept); set DATABASE_URL=postgres://user@host:port/db and run make run again to use a database."; \
		exec $(BIN) serve --store memory; \
	fi

run-memory: build ## Serve from memory with the demo catalogue (no database)
	$(BIN) serve --store memory

fmt: ## Format the code
	$(CARGO) fmt --all

lint: tools check-domain-deps ## rustfmt check, clippy with warnings denied, and the domain's dependencies
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The crates that do I/O (a database, a network, the OS's randomness, a runtime, a metrics
# recorder): `domain` must reach none of them, even through another crate. `rand` and
# `rand_chacha` without their default features are deterministic generators (the draw's
# seeded order); the operating system's randomness comes in only through `getrandom`.
IO_CRATES := diesel.*|pq-sys|actix.*|tokio.*|mio|r2d2|redis|reqwest|hyper.*|h2|socket2|getrandom|libc|nix|metrics.*|tracing-subscriber|tracing-appender|jsonwebtoken

check-domain-deps: ## Fail when the domain crate depends on an I/O crate (cargo tree -p domain -e normal)
	@bad=$$($(CARGO) tree -p domain -e normal --prefix none | awk '{print $$1}' | sort -u | grep -E '^($(IO_CRATES))$$' || true); \
	if [ -n "$$bad" ]; then echo "domain must do no I/O, but it depends on: $$bad" >&2; exit 1; fi; \
	echo "domain depends on no I/O crate"

test: tools db-up redis-up lint test-deploy test-rust test-browser test-api test-hosts ## Lint, then every test: deployment files, unit, conformance, races, HTTP, black-box, faults, browser, schemathesis, the reference deployment's hosts

test-deploy: ## The alert rules and their unit tests, and the dashboard's queries, with promtool
	python3 deploy/check.py

test-rust: ## Every Rust test (unit, conformance, races, HTTP, black-box, model-based, faults)
	$(CARGO) test --workspace --lib --bins --tests --no-fail-fast
	$(CARGO) test --workspace --doc

test-browser: ## The buyer's page in headless Chromium (tests/browser)
	$(CARGO) build -p app --bin concert
	CONCERT_BIN=$(DEBUG_BIN) tests/browser/run.sh

test-api: ## schemathesis against /openapi.json of a running binary (tests/api), identity off, then on
	$(CARGO) build -p app --bin concert
	CONCERT_BIN=$(DEBUG_BIN) tests/api/run.sh
	CONCERT_BIN=$(DEBUG_BIN) API_TEST_IDENTITY=on tests/api/run.sh

bench-position: db-up ## Position lookup cost at 1,000 vs 1,000,000 waiting tokens
	$(CARGO) bench -p adapters-postgres --bench position

bench: db-up build ## Load-test the release binary on both queue stores (a private redis-server) against ceilings measured in the same run
	./bench/run.sh

clean-test-dbs: ## Drop test databases of crashed runs and the migrated template that test runs keep between runs
	psql -h 127.0.0.1 -U postgres -Atc "select datname from pg_database where datname like 'concert\_test\_%' or datname like 'concert\_e2e\_%'" | while read -r db; do psql -h 127.0.0.1 -U postgres -qc "drop database if exists \"$$db\" with (force)"; done

# A whole on-sale, played (issue 18): knobs are environment variables, see crates/onsale/local.sh.
.PHONY: onsale
onsale: ## Play a whole on-sale with crates/onsale against ONSALE_BASE_URL (+ADMIN_TOKEN), else a server of its own (PostgreSQL + Redis); knobs ONSALE_BUYERS (20000), ONSALE_JOIN_RATE (2000), ONSALE_SEATS, ONSALE_SALE_SECS (60), ONSALE_MAX_SECS (600), ONSALE_ARGS (e.g. --chaos "20:deploy/cluster.sh kill-instance 2"), ONSALE_OUT (target/onsale)
	@if [ -z "$$ONSALE_BASE_URL" ]; then $(MAKE) -s db-up redis-up; fi
	$(CARGO) build --release -p app --bin concert
	$(CARGO) build --release -p onsale --bin onsale
	crates/onsale/local.sh

# The reference deployment on this machine (deploy/cluster.sh; docs/operations.md, "The
# reference deployment"). Needs root: the hosts are network namespaces.
.PHONY: cluster cluster-down cluster-status test-cluster test-hosts

cluster: build ## Bring up the reference deployment: 3 hosts in network namespaces behind HAProxy, its own PostgreSQL and Redis Cluster
	CONCERT_BIN=$(BIN) deploy/cluster.sh up

cluster-down: ## Remove every namespace, link, process, database and file that make cluster made
	deploy/cluster.sh down

cluster-status: ## The cluster's hosts and their health, HAProxy's view, Redis and PostgreSQL
	deploy/cluster.sh status

test-cluster: build ## The reference deployment: spread over hosts, one killed and restarted, a drain, torn down leaving nothing (tests/cluster)
	CONCERT_BIN=$(BIN) tests/cluster/run.sh

test-hosts: ## tests/cluster on the debug binary (make test's run: it builds that binary anyway)
	$(CARGO) build -p app --bin concert
	CONCERT_BIN=$(DEBUG_BIN) tests/cluster/run.sh

# The scale-out targets of issue 18 (bench/cluster.sh; docs/benchmarks.md, "Scale-out (make
# bench-cluster)"). Needs root: it brings up the reference deployment, and tears it down.
.PHONY: bench-cluster
bench-cluster: db-up build ## Scale-out: joins and polls through HAProxy to 3 instances, issue on a Redis Cluster vs one Redis, Redis bytes per waiting buyer, against ceilings measured in the same run
	CONCERT_BIN=$(BIN) ./bench/cluster.sh
