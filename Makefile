# syncer developer targets. `make help` lists them.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
PKGS    := ./...

.PHONY: help tools rsync build deb bench bench-reconcile test test-short lint fmt vet staticcheck depcheck check run install clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/syncer
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/syncer ./cmd/syncer

tools: ## install what the tests run for real (rsync, nats-server, promtool, systemd-analyze, sshd) when root, else say how
	@./.ci/tools

test: tools ## unit, component and end-to-end tests with the race detector, then the real-load diagnose tests alone
	SYNCER_TEST_REQUIRE_RSYNC=$${SYNCER_TEST_REQUIRE_RSYNC:-1} SYNCER_TEST_REQUIRE_TOOLS=$${SYNCER_TEST_REQUIRE_TOOLS:-$$([ "$$(id -u)" = 0 ] && echo 1)} $(GO) test -race -count=1 -timeout 15m $(PKGS)
	SYNCER_LOAD_TESTS=1 $(GO) test -count=1 -p 1 -run '^TestLoad_' ./diag

test-short: ## the quick subset
	$(GO) test -race -short $(PKGS)

fmt: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet $(PKGS)

staticcheck: ## staticcheck (pinned as a go tool)
	$(GO) tool staticcheck $(PKGS)

# Test code may cross only where the real neighbour is the point: the pool
# against the real JetStream queue, reconcile's plans applied by the real rsync.
PIPELINE       := watcher queue coalesce worker rsync reconcile guard copier diag
DEPCHECK_ALLOW := worker:queue reconcile:rsync
depcheck: ## fail if pipeline packages import one another, tests included (only cmd/ wires them; exceptions in DEPCHECK_ALLOW)
	@bad=0; for p in $(PIPELINE); do \
	  deps=$$($(GO) list -deps -test ./$$p); \
	  for q in $(PIPELINE); do \
	    [ $$p = $$q ] && continue; \
	    case " $(DEPCHECK_ALLOW) " in *" $$p:$$q "*) continue;; esac; \
	    if echo "$$deps" | grep -qx "github.com/syncer/syncer/$$q"; then echo "depcheck: $$p (or its tests) imports $$q"; bad=1; fi; \
	  done; done; exit $$bad

lint: fmt vet staticcheck depcheck ## all static checks

check: lint test ## what CI runs

rsync: ## install rsync with apt-get when it is missing (as root), or say how
	@command -v rsync >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then echo "installing rsync (apt-get)"; apt-get update -qq && apt-get install -y -qq rsync; \
	  else echo "syncer needs rsync: run 'sudo apt-get install rsync'" >&2; exit 1; fi; }

SOURCE ?= /data/prod
DEST   ?= /data/prod_backup
run: rsync build ## replicate SOURCE to DEST continuously (defaults /data/prod → /data/prod_backup)
	./bin/syncer run --source "$(SOURCE)" --dest "$(DEST)"

# The Debian package: nfpm pinned here, run from the module proxy.
NFPM  ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
ARCH  ?= $(shell $(GO) env GOARCH)
DEBVERSION := $(shell echo "$(VERSION)" | sed -e 's/^v//' -e 's/-/+/g' | grep -E '^[0-9]' || echo "0.0.0+$(VERSION)")
deb: ## build dist/syncer_VERSION_ARCH.deb: binary, unit, conffile, completions, man pages, alert rules and dashboard
	rm -rf dist && mkdir -p dist
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o dist/syncer ./cmd/syncer
	./dist/syncer docs dist
	gzip -9n dist/man/*.1
	VERSION=$(DEBVERSION) ARCH=$(ARCH) $(GO) run $(NFPM) package --config deploy/deb/nfpm.yaml --packager deb --target dist/
	@ls dist/*.deb

install: deb ## build the Debian package and install it (as root): apt install ./dist/syncer_*.deb
	apt-get install -y ./dist/syncer_*.deb

clean: ## remove build output
	rm -rf bin

bench: ## syncer (fanotify and inotify) against lsyncd: lag at 100/500/2000 changes/s, a 50k-file storm, 100k and 1M dirs, an unrelated writer, large-file throughput vs cp
	@command -v lsyncd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq lsyncd >/dev/null; } || { echo "bench needs lsyncd: apt-get install lsyncd" >&2; exit 1; }
	$(GO) run ./bench/live $(BENCH_ARGS)

bench-reconcile: ## time syncer reconcile against cp -a, serial rsync and rsync per project, warm then cold (RUNS=3; root: the backup is a loop-mounted ext4)
	$(GO) run ./bench/reconcile -runs $${RUNS:-3} $(BENCH_ARGS)
	$(GO) run ./bench/reconcile -runs $${RUNS:-3} -cold $(BENCH_ARGS)
