# bedlab: build, test, demo, benchmark and fuzz entry points.
#
# Every target installs what it needs (Debian packages through `deps`, cargo tools in the
# target that uses them), so `make run` and `make test` work on a fresh machine that has
# only the Rust toolchain. The namespace parts need root; CI runs as root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
# ip, nft, conntrack and sysctl live in sbin, which not every PATH has.
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin

# Debian packages the lab, the tests and the scripts use, and one command from each that
# tells whether it is installed.
DEB_PACKAGES := iproute2 nftables tshark tcpdump iperf3 iputils-ping conntrack procps chromium bc
DEB_COMMANDS := ip nft tshark tcpdump iperf3 ping conntrack pgrep chromium bc

SIXBED4 := target/release/sixbed4
FUZZ_DIR := harness/sixbed4/fuzz
# Seconds each fuzz target runs under `make fuzz`.
FUZZ_SECONDS ?= 60

.PHONY: help deps build test run demo bench fuzz golden-review reap

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

deps: ## install missing Debian packages (only when a command is missing)
	@missing=""; \
	for cmd in $(DEB_COMMANDS); do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -z "$$missing" ]; then echo "deps: all present"; exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "deps: missing:$$missing; run 'make deps' as root (namespace tests skip meanwhile)"; \
		exit 0; \
	fi; \
	echo "deps: missing:$$missing; installing $(DEB_PACKAGES)"; \
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q; \
	apt-get install -y -q --no-install-recommends $(DEB_PACKAGES)

build: ## release build of the whole workspace
	$(CARGO) build --release --workspace

test: deps ## fmt, clippy, then every test (namespace tests need root)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

# The default conformance suite: every scenario in scenarios/ against every adapter in
# harness/impls/, two cells at a time. Results (report.html, summary.md, junit.xml,
# report.json, per-cell captures and logs) go to out/<run-id>/.
JOBS ?= 2
run: deps build ## the default conformance suite (root); results in out/<run-id>/
	target/release/bedlab run --jobs $(JOBS)

demo: deps build ## the sixbed4 demo: router and two NATed peers in namespaces (root)
	scripts/demo.sh $(SIXBED4)

bench: deps build ## criterion benches, tunnel throughput in namespaces (root), check vs tshark on 1 GB
	$(CARGO) bench -p sixbed4
	scripts/bench-tunnel.sh $(SIXBED4)
	scripts/bench-field.sh target/release/bedlab

# cargo-fuzz needs a nightly toolchain. Where none is installed and rustup cannot fetch one,
# the fuzz targets' bodies still run as plain tests: each target in harness/sixbed4/fuzz calls
# an entry point in `sixbed4::fuzzing`, whose property tests (names contain "fuzz") feed the
# same bodies with generated and mutated datagrams.
fuzz: ## run each cargo-fuzz target for FUZZ_SECONDS (nightly), else the bodies as tests
	@if ! rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then \
		rustup toolchain install nightly --profile minimal || true; \
	fi; \
	if rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; then \
		$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked; \
		if [ ! -d $(FUZZ_DIR) ]; then \
			echo "fuzz: no fuzz targets yet ($(FUZZ_DIR) does not exist)"; exit 0; \
		fi; \
		cd harness/sixbed4; \
		for target in $$($(CARGO) +nightly fuzz list); do \
			echo "fuzz: $$target for $(FUZZ_SECONDS)s"; \
			$(CARGO) +nightly fuzz run $$target -- -max_total_time=$(FUZZ_SECONDS); \
		done; \
	else \
		echo "fuzz: no nightly toolchain here; running the fuzz bodies as plain tests"; \
		$(CARGO) test -p sixbed4 --release -- fuzz; \
	fi

golden-review: ## review changed golden snapshots (cargo insta)
	$(CARGO) insta --version >/dev/null 2>&1 || $(CARGO) install cargo-insta --locked
	$(CARGO) insta review

reap: ## delete namespaces left by killed demo or bench runs (the tests reap their own)
	scripts/demo.sh --reap
	scripts/bench-tunnel.sh --reap
