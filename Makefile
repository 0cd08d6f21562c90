# connprobe. `make demo` and `make test` are the two commands a newcomer runs.
GO ?= go
BIN := bin/probe
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
# TAGS=kubernetes links the Kubernetes client (kubernetes target blocks and
# vantage pods_selector); the image is built with it. Without it the binary
# is 45 MB smaller and uses about 20 MiB less memory (BENCHMARKS.md).
TAGS ?=

.PHONY: build demo test deps vet unit bench soak clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/probe

deps:
	./scripts/install-deps.sh

# demo: build, probe a healthy VIP and every connect-level fault (IPv4 and
# IPv6) in one lab, replay the five incidents each in a lab of its own, print
# the table and one block per incident, tear every lab down.
demo: build
	./scripts/install-deps.sh demo
	./$(BIN) lab demo

vet:
	$(GO) vet ./...
	$(GO) vet -tags kubernetes ./...

# test installs what is missing, vets, and runs every test with the race
# detector. Privileged tests must run: CONNPROBE_REQUIRE_PRIV=1 turns their
# "not root" skip into a failure, and any skipped test fails the run.
test: deps vet
	./scripts/test.sh

bench: build
	./scripts/bench.sh

# soak: 20 minutes of probe serve under churn, reloads, hostile servers and
# idle HTTP clients (scripts/soak.sh); writes BENCHMARKS.md's Soak section.
soak:
	./scripts/soak.sh

clean:
	rm -rf bin
