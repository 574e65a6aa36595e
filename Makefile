# citystack: see README.md. `make demo` and `make test` are the two entry points.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export GOWORK := off
export GOTOOLCHAIN := local

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: ## Build, start the local control plane and the operator, apply examples/, wait until Ready
	hack/demo.sh

down: ## Stop the operator and the local control plane started by `make demo`
	hack/demo.sh down

test: ## Unit tests, then integration tests against a fresh local control plane
	hack/test.sh

unit: ## Unit and snapshot tests only (no cluster)
	INSTA_UPDATE=no cargo test --lib --bins --locked

cluster: ## Build the pinned control-plane binaries into the per-machine cache
	hack/cluster/build.sh

cluster-up: ## Start the local control plane only (kubeconfig at .local/kubeconfig)
	hack/cluster/up.sh

image: ## Release build, then the operator image in .local/image/ (OCI layout + docker-archive), checked; no Docker needed
	cargo build --release --locked --bin citystack
	hack/image/test.sh "$${CARGO_TARGET_DIR:-target}/release/citystack" .local/image
	@echo "push: skopeo copy oci:.local/image/oci:<version> docker://REGISTRY/citystack:<version> (or crane push .local/image/citystack.tar ...)"

crds: ## Regenerate crds/ from the API types
	cargo run --quiet --locked -- crds --out-dir crds
	cp crds/*.yaml charts/citystack/crds/

bench: ## Benchmarks: per-reconcile pure work, then the scale run on a local control plane (README: Scale)
	hack/bench/run.sh

lint: ## Formatting and clippy
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

.PHONY: help demo down test unit cluster cluster-up image crds bench lint
