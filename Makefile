# Ganglion. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
TOOLS_DIR := $(CURDIR)/.bin
export PATH := $(TOOLS_DIR):$(PATH)
PROTO_GEN := $(wildcard proto/ganglion/v1/*.pb.go)

.PHONY: help build tools proto proto-check lint test unit e2e e2e-nft e2e-security e2e-ipvs e2e-kube e2e-chaos e2e-announce chaos image image-test bench bench-peer demo demo-compute clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: bin/ganglion-controlplane bin/ganglionctl bin/ganglion-agent ## build the static binaries into bin/

# The binaries are static so that they run in any container image and on any bare-metal host.
bin/%: FORCE
	CGO_ENABLED=0 $(GO) build -o $@ ./$(if $(filter ganglion-agent,$*),nodeagent,controlplane)/cmd/$*
FORCE:

# The code generators are pinned in tools/go.mod and built here, so nothing is installed by hand.
tools: $(TOOLS_DIR)/buf $(TOOLS_DIR)/protoc-gen-go $(TOOLS_DIR)/protoc-gen-go-grpc $(TOOLS_DIR)/grpcurl ## build the pinned tools (proto generators, grpcurl)
$(TOOLS_DIR)/%: tools/go.mod tools/go.sum
	cd tools && GOBIN=$(TOOLS_DIR) $(GO) install $$(awk '/^tool \(/{f=1;next} f&&/\)/{f=0} f{print $$1}' go.mod | grep '/$*$$')

proto: tools ## regenerate the committed Go code from proto/
	buf generate

proto-check: tools ## fail when the committed generated code is stale
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp && \
	for f in $(PROTO_GEN); do cmp -s $$f $$tmp/$$f || { echo "stale generated code: $$f (run make proto)"; exit 1; }; done; \
	echo "generated code is current"

lint: tools ## buf lint, go vet, gofmt
	buf lint
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@# The agent speaks netlink only: it never runs nft or another binary (issue 15).
	@if $(GO) list -deps ./nodeagent/... | grep -q knftables; then echo "nodeagent depends on knftables"; exit 1; fi

unit: tools ## every Go test outside e2e/ (the nftables backend's namespace tests need root)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/e2e/')

e2e: tools ## brain and agent processes driven with grpcurl
	$(GO) test -count=1 ./e2e/

e2e-nft: ## three nftables nodes in network namespaces, brain and agents as processes (root)
	$(GO) test -count=1 -timeout 20m ./e2e/nft/

e2e-security: tools ## what a brain with no security flags refuses (plaintext, foreign CA, expired, other nodes' streams, readers writing, unsafe documents), rotation without restart, --insecure on loopback only
	$(GO) test -count=1 -timeout 10m ./e2e/security/

e2e-ipvs: ## the IPVS dataplane in a qemu VM (root; installs qemu, busybox and ipvsadm, fetches Debian's kernel)
	$(GO) test -count=1 -timeout 30m ./e2e/vm/... ./e2e/ipvs/...

e2e-kube: ## a real kube-apiserver on etcd (built once, cached in /var/cache/ganglion-kube), two brains in Kubernetes mode, nftables agents (root)
	GO=$(GO) ./e2e/kube/prepare.sh
	$(GO) test -count=1 -timeout 15m ./e2e/kube/

e2e-chaos: ## short store faults on a three-member etcd (Debian's etcd-server): a member killed, a member or the leader paused, a brain SIGKILLed mid-apply, quorum lost
	$(GO) test -count=1 -timeout 10m -run 'KeepsAcknowledgedApplies|TestChecker|TestAckedLost|TestClassify|TestPausedLeader|TestQuorumLoss' ./e2e/chaos/

e2e-announce: ## outside clients reach services: an L2 owner that fails over, BGP to a real router (Debian's bird2) with ECMP, withdraw and graceful restart (root)
	$(GO) test -count=1 -timeout 10m ./e2e/announce/

chaos: ## every store fault in turn (member, leader, quorum for 60 s, brain mid-apply, slow member) under concurrent admin clients, histories checked with porcupine; prints CHAOS lines (minutes; not in test)
	@set -o pipefail; GANGLION_CHAOS=1 $(GO) test -count=1 -v -timeout 30m -run '^TestChaos$$' ./e2e/chaos/ | grep -E '^(CHAOS|---|ok|FAIL|PASS)|_test.go|\.go:[0-9]+: fault'

# The image: the static binaries with a fixed version, one layer on an empty base, no Docker daemon
# (internal/image, go-containerregistry). Entries and times are fixed (SOURCE_DATE_EPOCH: the last
# commit's time), so the same commit gives the same digest: image builds it twice and compares.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REPO ?= ghcr.io/ganglion-proxy/ganglion
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_BINS := bin/static/ganglion-controlplane bin/static/ganglion-agent bin/static/ganglionctl
image: ## build the OCI image layout bin/image (and bin/image.tar for docker load) of the static binaries, without Docker
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/static/ \
	  ./controlplane/cmd/ganglion-controlplane ./controlplane/cmd/ganglionctl ./nodeagent/cmd/ganglion-agent
	$(GO) build -o bin/ganglion-image ./internal/image/cmd/ganglion-image
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) bin/ganglion-image -version $(VERSION) -repo $(IMAGE_REPO) -out bin/image.again $(IMAGE_BINS) >/dev/null
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) bin/ganglion-image -version $(VERSION) -repo $(IMAGE_REPO) -out bin/image -tarball bin/image.tar $(IMAGE_BINS)
	@cmp bin/image/index.json bin/image.again/index.json || { echo "image: two builds of the same binaries differ"; exit 1; }
	@rm -rf bin/image.again

image-test: image $(TOOLS_DIR)/crane ## run the brain and the agent from the image's root filesystem, chrooted in a fresh network namespace (root)
	@set -o pipefail; GANGLION_IMAGE=$(CURDIR)/bin/image $(GO) test -count=1 -v -timeout 10m ./e2e/image/ | grep -E '^(---|ok|FAIL|PASS)|image-test took|_test.go'

test: proto-check lint unit e2e e2e-nft e2e-security e2e-ipvs e2e-kube e2e-chaos e2e-announce image-test ## everything CI runs

bench: ## print the BENCH lines
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkComputeLoad$$' -benchtime 1x ./controlplane/compute | grep '^BENCH'
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkComputeMaterialise$$' -benchtime 1x ./controlplane/compute | grep '^BENCH'
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkComputeChange$$' -benchtime 1x ./controlplane/compute | grep '^BENCH'
	@$(GO) test -run '^$$' -bench '^(BenchmarkFanout|BenchmarkFanout5000|BenchmarkFanoutFloor|BenchmarkTLSReconnect)$$' -benchtime 1x -timeout 90m ./controlplane/brain | grep '^BENCH'
	@$(GO) test -run '^$$' -bench 'BenchmarkNFT$$' -benchtime 1x ./nodeagent/dataplane/nftables | grep '^BENCH'
	@$(GO) test -run '^$$' -bench 'BenchmarkIPVSInVM$$' -benchtime 1x -timeout 30m ./e2e/ipvs | grep '^BENCH'
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkDNS$$' -benchtime 1x ./nodeagent/dns | grep '^BENCH'
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkApply$$' -benchtime 1x -timeout 10m ./e2e/ | grep '^BENCH'
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkAnnounce$$' -benchtime 1x -timeout 10m ./e2e/announce/ | grep '^BENCH'

# Not part of test: Ganglion beside upstream kube-proxy, both against one real kube-apiserver
# (e2e/peer). The first run builds kube-proxy from the module e2e/kube/apiserver pins (cached in
# /var/cache/ganglion-kube beside kube-apiserver). About 8 minutes, most of it loading 10,000
# services and spacing the changes; GANGLION_PEER_SIZES / _CHANGES / _IDLE_AT shorten it.
bench-peer: ## Ganglion beside upstream kube-proxy (nftables) on one kube-apiserver at 100 and 10,000 services: change to kernel p50/p99, initial sync, RSS, CPU per change, idle CPU; prints BENCH peer lines and a table (root; not in test)
	GO=$(GO) ./e2e/kube/prepare.sh kube-proxy
	@set -o pipefail; GANGLION_BENCH_PEER=1 $(GO) test -count=1 -v -run '^TestPeer$$' -timeout 40m ./e2e/peer/ | grep --line-buffered -E '^(BENCH|PHASE|INFO|[|]|---|ok|FAIL)|_test.go|^$$'

# The soak is not part of test: 1,000 agents (100 applying every update, 900 held) under 10
# minutes of churn hold both cores. Override the size with GANGLION_SOAK_AGENTS,
# GANGLION_SOAK_MINUTES (up to 150: the timeout leaves the setup half an hour) and
# GANGLION_SOAK_APPLYING; GANGLION_SOAK_PROFILE=<dir> writes heap and CPU profiles of the brain
# and the agents, the RSS samples and a latency timeline. BenchmarkSoakHeap (under a minute)
# then runs two hours of the same churn with no agent and fits the brain's live heap.
.PHONY: soak
soak: ## 1,000 agents under 100 changes/s for 10 minutes: memory slopes, change-to-ack p99 and stalls; prints BENCH soak, fails past its floors (not in test)
	@set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkSoak(Heap)?$$' -benchtime 1x -timeout 3h ./controlplane/brain | grep -E '^(BENCH|FAIL|---)|soak(heap)?_bench_test.go'

demo: build ## bare metal end to end (root): namespaces, brain with embedded etcd, nftables agents, health checks
	$(GO) build -o bin/demo ./demo
	./bin/demo

demo-compute: bin/ganglion-controlplane ## compute the built-in example cluster and print each node's state
	./bin/ganglion-controlplane demo

clean: ## remove build output
	rm -rf bin $(TOOLS_DIR)
