# Outpost: run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.bin
export PATH := $(TOOLS):$(PATH)

# Pinned tool versions (installed into .bin/ from the Go module proxy).
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

BINARIES := outpost-controller outpost-node outpost-scheduler outpost-etcd outpostctl outpost-dev outpost-loadtest
GO_TEST_FLAGS ?= -count=1 -timeout 15m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_.-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every binary into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: dev
dev: build ## Run the all-in-one local cluster in the foreground (Ctrl-C stops it)
	$(BIN)/outpost-dev --dir $(CURDIR)/.outpost-dev

.PHONY: test
test: deps check-generate lint-go ## Run the whole test suite (what CI runs)
	$(GO) test $(GO_TEST_FLAGS) ./...
	@echo "e2e and fault tests (deploy/compose, build tag e2e) skipped: they need Docker and root; run 'make test-e2e'"

.PHONY: test-race
test-race: ## Run the tests with the race detector
	$(GO) test -race $(GO_TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 20s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-20s} $$pkg || exit 1; \
	  done; done

.PHONY: deps
deps: ## Install what the tests need (Debian packages, Go modules)
	@./.ci/deps.sh

.PHONY: tools
tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc ## Install the pinned code generators into .bin/

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: generate
generate: tools ## Regenerate the Go code from proto/
	find proto -name '*.pb.go' -delete
	buf generate

.PHONY: check-generate
check-generate: generate ## Fail when the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
	  echo "generated code in proto/ is stale: run 'make generate' and commit"; git status --porcelain -- proto; exit 1; fi

.PHONY: lint
lint: tools lint-go ## buf lint, buf breaking against main, go vet, gofmt
	buf lint
	@if git rev-parse --verify -q main >/dev/null; then buf breaking --against '.git#branch=main'; fi

.PHONY: lint-go
lint-go:
	buf lint
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Flags for outpost-bench, e.g. BENCHFLAGS="-quick -only 'Cache hit'"; see docs/benchmarks.md.
BENCHFLAGS ?=

.PHONY: bench
bench: deps ## Run the benchmark suite beside nginx (under 20 min) and write docs/benchmarks.md
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/outpost-bench ./cmd/outpost-bench
	$(BIN)/outpost-bench $(BENCHFLAGS)

.PHONY: bench-all
bench-all: deps ## Run every Go benchmark once, with no report (go test -bench .)
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: clean
clean: ## Remove build output and the dev cluster's state
	rm -rf $(BIN) .outpost-dev

# Multi-host deployment: deploy/ and docs/deployment.md. These need Docker and
# are not part of `make test`; CI runs `make test-e2e` when Docker works
# (.ci/run).
.PHONY: images
images: ## Build static binaries into bin/linux-amd64/ and the FROM-scratch images outpost/*
	GO=$(GO) deploy/images/build.sh

.PHONY: compose-up
compose-up: images ## Run the multi-host topology in Docker (etcd x3, controllers x2, schedulers x2, edges x6, origin)
	deploy/compose/up.sh

.PHONY: compose-down
compose-down: ## Tear the Docker topology down: containers, networks, volumes, secrets
	deploy/compose/down.sh

# The e2e and fault tests run their own topology beside any `make
# compose-up` one: images tagged E2E_TAG, compose project outpost-e2e,
# networks 10.89.x.0/24, ports 17000-18443 (deploy/compose/harness_test.go).
E2E_TAG ?= e2e

.PHONY: test-e2e
test-e2e: deps ## Build images tagged e2e, bring up a separate Docker topology, run the e2e and fault tests (docs/deployment.md#fault-tests), tear it down
	TAG=$(E2E_TAG) GO=$(GO) deploy/images/build.sh
	TAG=$(E2E_TAG) $(GO) test -tags e2e -count=1 -timeout 40m -v ./deploy/compose/
