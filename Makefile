# Concert ticketing service. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/concert
BIND_ADDR ?= 127.0.0.1:8080
export DATABASE_URL BIND_ADDR

.PHONY: help run run-memory test lint fmt build bench bench-position db-up clean-test-dbs

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

db-up: ## Start the local PostgreSQL 15 if it is not accepting connections
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect 15 main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not come up" >&2; exit 1

build: ## Build the release binary (target/release/concert)
	cargo build --release -p app --bin concert

run: db-up build ## Create + migrate the database, seed the demo catalogue, serve on $(BIND_ADDR)
	./target/release/concert seed-demo
	./target/release/concert serve

run-memory: build ## Serve on the in-memory store with the demo catalogue (no database)
	./target/release/concert serve --store memory

fmt: ## Format the code
	cargo fmt --all

lint: ## rustfmt check and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test: db-up lint ## Lint, then every test (unit, conformance, PostgreSQL races, HTTP, black-box)
	cargo test --workspace --lib --bins --tests --no-fail-fast
	cargo test --workspace --doc

bench-position: db-up ## Position lookup cost at 1,000 vs 1,000,000 waiting tokens
	cargo bench -p adapters-postgres --bench position

bench: db-up build ## Load-test the release binary on PostgreSQL against its ceilings (see docs/benchmarks.md)
	./bench/run.sh

clean-test-dbs: ## Drop databases left by crashed test runs
	psql -h 127.0.0.1 -U postgres -Atc "select datname from pg_database where datname like 'concert\_test\_%' or datname like 'concert\_e2e\_%'" | while read -r db; do psql -h 127.0.0.1 -U postgres -qc "drop database if exists \"$$db\" with (force)"; done
