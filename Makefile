# tcptrace: `make help` lists the targets.
.DEFAULT_GOAL := build
GO      ?= go
# The BPF objects are committed; `make generate` rebuilds them with this
# exact compiler (Debian bookworm's clang-19) so the output is byte for byte
# the same as what is committed.
CLANG   ?= clang-19
CLANG_VERSION := 19.1.7
# tcptrace needs root: run it through sudo unless already root.
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help build run test test-unit test-repeat test-kernels generate check-generate bench breakdown progcost viewcost soak static fuzz vet clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build ./tcptrace and ./tcpchurn (no clang needed)
	$(GO) build -o tcptrace ./cmd/tcptrace
	$(GO) build -o tcpchurn ./cmd/tcpchurn

run: build ## Build and run tcptrace until Ctrl-C (through sudo unless root); flags in ARGS="-e --port 8080"
	$(SUDO) ./tcptrace $(ARGS)

test: ## Run every test; as root the BPF tests run for real (sudo make test)
	scripts/setup.sh
	$(GO) vet ./...
	$(GO) test -count=1 ./...

test-repeat: ## Run the whole suite N times (default 20) on a fresh clone of HEAD, as CI (root, CI=true); prints each failure
	$(SUDO) env N="$(or $(N),20)" RUN="$(RUN)" PKG="$(or $(PKG),./...)" PATH="$$PATH" scripts/test-repeat.sh

test-unit: ## Run only the tests that need no root
	$(GO) test -count=1 -short ./...

test-kernels: ## Run the privileged tests on Debian's 6.1 and 6.12 kernels in VMs, and on this one (KERNELS="6.12" to pick)
	$(SUDO) env KERNELS="$(KERNELS)" SUBSET="$(SUBSET)" ACCEL="$(ACCEL)" VERBOSE="$(VERBOSE)" PATH="$$PATH" scripts/test-kernels.sh

generate: ## Rebuild the BPF objects from bpf/*.c with the pinned clang
	scripts/setup.sh --generate
	@$(CLANG) --version | grep -q 'version $(CLANG_VERSION)' || { \
		echo "make generate: need $(CLANG) $(CLANG_VERSION) (Debian bookworm clang-19) to reproduce the committed objects; found: $$($(CLANG) --version | head -1)" >&2; exit 1; }
	cd internal/probe && $(GO) generate ./...

check-generate: generate ## Fail if the committed BPF objects are not what bpf/ builds
	@git diff --exit-code -- internal/probe || { \
		echo "check-generate: the generated BPF files differ from the committed ones: run make generate and commit" >&2; exit 1; }

bench: build ## Benchmark: tcptrace vs untraced vs tcpstates under tcpchurn and nginx + wrk, then progcost
	scripts/bench.sh

breakdown: build ## Where tcptrace's cost goes: builds with parts switched off vs untraced
	MODES="untraced tcptrace no-timer-start no-timers idle idle-no-timers" N=$${N:-40000} PAIRS=$${PAIRS:-10} \
		SCENARIOS="$${SCENARIOS:-churn}" STATS=0 scripts/bench.sh

progcost: build ## Kernel time per BPF program under tcpchurn and nginx + wrk (bpf_stats)
	scripts/progcost.sh

soak: ## tcptrace --metrics --all-netns under churn for DURATION s (default 600), scraped every second
	$(SUDO) env DURATION="$(or $(DURATION),600)" PATH="$$PATH" scripts/metrics-soak.sh

static: ## Build ./tcptrace-static as the container image does (deploy/Dockerfile)
	scripts/build-static.sh ./tcptrace-static

viewcost: build ## CPU of tcptrace with the live view (in tmux) vs -q, side by side in one storm
	scripts/viewcost.sh

fuzz: ## Fuzz the decoders of outside bytes for a while each
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/probe
	$(GO) test -run '^$$' -fuzz FuzzReadNetstat -fuzztime 30s ./internal/hostinfo
	$(GO) test -run '^$$' -fuzz FuzzText -fuzztime 30s ./internal/safe
	$(GO) test -run '^$$' -fuzz FuzzParseCgroup -fuzztime 30s ./internal/netns
	$(GO) test -run '^$$' -fuzz FuzzReplay -fuzztime 30s ./internal/capture
	$(GO) test -run '^$$' -fuzz FuzzParseInetDiagMsg -fuzztime 30s ./internal/census
	$(GO) test -run '^$$' -fuzz FuzzParseTCPInfo -fuzztime 30s ./internal/census
	$(GO) test -run '^$$' -fuzz FuzzParseFDLimit -fuzztime 30s ./internal/owner

vet: ## go vet
	$(GO) vet ./...

clean: ## Remove built binaries
	rm -f tcptrace tcpchurn tcptrace-static
