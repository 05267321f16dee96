# remote-istiod-operator

IMG ?= remote-istiod-operator:latest
GOLANGCI_LINT_VERSION ?= v2.15.0
# Tools build from their Go modules into bin/ (nothing is downloaded from release pages).
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= go tool -modfile=hack/tools/go.mod controller-gen
BENCHSTAT ?= go tool -modfile=hack/tools/go.mod benchstat
BENCH_COUNT ?= 6
CRD_REF_DOCS ?= go tool -modfile=hack/tools/go.mod crd-ref-docs
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# envtest's kube-apiserver and etcd, built once from their Go modules and cached outside the clone.
ENVTEST_ASSETS = $$(hack/envtest-assets.sh)
# Istio's pilot-discovery for the tests that run a real istiod, built once from the
# istio.io/istio module in go.mod and cached outside the clone.
PILOT_DISCOVERY_BIN = $$(hack/pilot-discovery.sh)
TEST_TIMEOUT ?= 30m
# The Helm chart carries copies of the generated CRD and RBAC rules (`make manifests` refreshes them).
CHART = config/charts/remote-istiod-operator

.PHONY: all
all: build

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=remote-istiod-operator crd paths="./api/..." paths="./internal/..." paths="./cmd/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	rm -f $(CHART)/crds/*.yaml && cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/role.yaml

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: api-docs
api-docs: ## Generate the API reference docs/api-reference.md from the API types (templates in hack/api-docs).
	$(CRD_REF_DOCS) --source-path=./api --config=hack/api-docs/config.yaml --templates-dir=hack/api-docs/templates \
		--renderer=markdown --output-path=docs/api-reference.md --log-level=ERROR

.PHONY: istio-crds
istio-crds: ## Copy Istio's CRDs from the istio.io/api module in go.mod (mirrored into data-plane clusters that lack them).
	cp "$$(go list -m -f '{{.Dir}}' istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml" internal/mirror/crds/istio.yaml
	chmod 644 internal/mirror/crds/istio.yaml

.PHONY: golden
golden: ## Regenerate the render golden files after an intended change to rendering.
	go test ./internal/render/... -run "Golden|InjectionWebhook" -update

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (config in .golangci.yml).
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $(GOLANGCI_LINT)

.PHONY: envtest-assets
envtest-assets: ## Build (once) envtest's kube-apiserver and etcd; prints their directory.
	@hack/envtest-assets.sh

.PHONY: pilot-discovery
pilot-discovery: ## Build (once) Istio's pilot-discovery from the istio.io/istio module for tests that run a real istiod; prints its path.
	@hack/pilot-discovery.sh

.PHONY: verify-generated
verify-generated: generate manifests istio-crds api-docs ## Fail if generated files are stale.
	git diff --exit-code -- api config internal/mirror/crds docs/api-reference.md

.PHONY: test
test: verify-generated vet ## Run all tests: unit, golden and the multi-cluster envtest suite.
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" PILOT_DISCOVERY="$(PILOT_DISCOVERY_BIN)" go test ./... -race -timeout $(TEST_TIMEOUT) -count=1

.PHONY: demo
demo: ## Run the operator on a local mesh of three API servers and show it at work (DEMO_ONCE=1: check the outcome and exit; DEMO_LINK_RTT=100ms: far links to the data-plane clusters).
	@echo "compiling the demo (a minute or two the first time)"
	go run ./hack/demo $(if $(DEMO_ONCE),-once) $(if $(DEMO_LINK_RTT),-link-rtt=$(DEMO_LINK_RTT))

# make bench runs the figures of docs/benchmarks.md (hack/fleetbench) and the Go
# benchmarks (BENCH_FIGURE=go); BENCH_FIGURE=1 runs figure 1 alone, BENCH_FIGURE=1,3 two.
# BENCH_FLAGS go to hack/fleetbench (for example -n=1,4 -runs=1 -rtt=50ms -bandwidth=100).
# Figure 8, the headline (docs/benchmarks-headline.md), is test/headline's and takes 10 to
# 15 minutes of its own: BENCH_FIGURE=8 runs it (BENCH_HEADLINE is its command).
BENCH_FIGURE ?= 1,2,3,7,4,5,6,go
BENCH_FLAGS ?=
BENCH_HEADLINE ?= KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" PILOT_DISCOVERY="$(PILOT_DISCOVERY_BIN)" HEADLINE=1 \
	HEADLINE_OUT=$(CURDIR)/docs/benchmarks-headline.md go test ./test/headline -run TestHeadline -v -count=1 -timeout 30m
comma := ,
BENCH_FIGURES = $(subst $(comma), ,$(BENCH_FIGURE))
FLEET_FIGURES = $(subst $(eval) ,$(comma),$(strip $(filter-out go 8,$(BENCH_FIGURES))))

.PHONY: bench
bench: $(if $(FLEET_FIGURES),bench-fleet) $(if $(and $(filter 8,$(BENCH_FIGURES)),$(BENCH_HEADLINE)),bench-headline) $(if $(filter go,$(BENCH_FIGURES)),bench-go) ## Run the benchmarks across far clusters (docs/benchmarks.md) and the Go benchmarks; BENCH_FIGURE=1 runs one figure.

.PHONY: bench-fleet
bench-fleet: ## Run the figures of docs/benchmarks.md on a local mesh behind simulated far links and write them there.
	@echo "compiling the benchmark (a minute or two the first time)"
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go run ./hack/fleetbench -figures=$(or $(FLEET_FIGURES),1,2,3,7,4,5,6) $(BENCH_FLAGS)

.PHONY: bench-headline
bench-headline:
	$(BENCH_HEADLINE)

.PHONY: bench-go
bench-go: ## Run the Go benchmarks (envtest-backed ones included) and summarise them with benchstat: tables, variants side by side with ratios.
	mkdir -p $(LOCALBIN)
	KUBEBUILDER_ASSETS="$(ENVTEST_ASSETS)" go test ./... -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) > $(LOCALBIN)/bench.txt
	@echo "== a resync of an unchanged istiod, three ways (ratios against the operator's way)"
	$(BENCHSTAT) -filter '.name:ResyncIstiod' -col /resync $(LOCALBIN)/bench.txt
	@echo "== a resync of the mirror by number of objects, copies read with one List per kind (the operator), one read per copy, and from a cache"
	$(BENCHSTAT) -filter '.name:MirrorResync' -col /reads $(LOCALBIN)/bench.txt
	@echo "== rendering istiod, per Istio version"
	$(BENCHSTAT) -filter '.name:Render' $(LOCALBIN)/bench.txt

##@ Build

.PHONY: build
build: generate ## Build the manager binary.
	CGO_ENABLED=0 go build -trimpath -o bin/manager ./cmd

.PHONY: docker-build
docker-build: ## Build the operator image (needs a container engine).
	docker build -t $(IMG) .

.PHONY: run
run: manifests generate ## Run the manager against the cluster of the current kubeconfig.
	go run ./cmd

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply --server-side -k config/crd
