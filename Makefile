# frontdoor's build, run and test entry points. `make run` and `make test`
# are the two commands a fresh machine with Go needs (see README.md).

GO        ?= go
BIN       := bin/frontdoor
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X frontdoor/cli.Version=$(VERSION)
# Static binary: no cgo, so it runs on any Linux box of the same arch.
export CGO_ENABLED ?= 0
export GOTOOLCHAIN := local

.PHONY: all build run test test-race bench bench-peers bench-micro fuzz lint clean tlscheck

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/frontdoor

# Starts two reference mailbox servers (127.0.0.1:18081, :18082) and the
# gateway on its embedded default config (http://127.0.0.1:8080). Ctrl-C
# stops all three.
run: build
	./scripts/run-dev.sh $(BIN)

# Every test: unit, end-to-end over loopback (mailboxd as a separate
# process), allocation gates, then the race detector over the packages
# with concurrency, then a short fuzz pass. The mail tests need Dovecot:
# scripts/install-dovecot.sh installs it from Debian when missing (they
# skip, saying so, where it cannot be installed); the Negotiate tests need
# MIT Kerberos, which scripts/install-krb5.sh installs the same way (they
# create a throwaway realm and KDC on a loopback port, docs/kerberos.md).
test:
	./scripts/install-dovecot.sh
	./scripts/install-krb5.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 8m ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 8m ./l4/... ./poolmux/... ./l7/... ./tlsterm/... ./gateway/... ./identity/... ./directory/... ./auth/... ./accesslog/... ./mailproxy/... ./kerberos/...
	$(MAKE) --no-print-directory fuzz FUZZTIME=100000x

# The benchmark suite: mailboxd and the gateway as separate processes, the
# built-in load generator, direct-to-mailboxd numbers as the ceiling.
bench: build
	./$(BIN) bench $(BENCHFLAGS)

# The same suite side by side with nginx and haproxy (installed from Debian
# when missing; their services are kept from starting), each configured from
# bench/peers/ in front of the same mailboxd; prints frontdoor's ratio to
# each. The scenarios the peers can run; about 7 minutes on 2 cores, about 13
# with wrk and h2load, which the script installs if it can and --loadgen auto
# (the default) adds rows for (BENCHFLAGS='--loadgen builtin': none).
# JSON of every row and ratio in $(PEERSJSON). Add BENCHFLAGS='--pin' to
# give the proxies CPU 1 and the load CPU 0, '--tls-groups x25519' for
# handshakes like for like with an OpenSSL 3.0 peer.
PEERS     ?= nginx,haproxy
PEERSCENARIOS ?= keepalive-get,keepalive-get-16k,pipelined-get,many-clients,many-clients-10k,tls-keepalive-get,tls-handshake-full,tls-handshake-resumed,idle-conns,idle-conns-tls
PEERSJSON ?= bin/bench-peers.json
bench-peers: build
	./scripts/install-peers.sh
	./$(BIN) bench --peers $(PEERS) --scenario $(PEERSCENARIOS) --json $(PEERSJSON) $(BENCHFLAGS)

# Micro-benchmarks, benchstat-friendly: make bench-micro COUNT=10 > new.txt
COUNT ?= 6
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) ./l7/ ./l4/proxyproto/ ./directory/ ./bench/ ./identity/ ./auth/ ./auth/password/ ./accesslog/

# Budgets are execution counts (Nx), not durations: with a duration, Go 1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" as the
# time runs out on a loaded machine (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 1000000x
fuzz:
	$(GO) test ./l7/ -run '^$$' -fuzz '^FuzzScanRequestHead$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l7/ -run '^$$' -fuzz '^FuzzChunkedDecoder$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l7/ -run '^$$' -fuzz '^FuzzScanVsFasthttp$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l7/ -run '^$$' -fuzz '^FuzzPlainResponseVsFasthttp$$' -fuzztime $(FUZZTIME)
	$(GO) test ./auth/ -run '^$$' -fuzz '^FuzzParseBasic$$' -fuzztime $(FUZZTIME)
	$(GO) test ./auth/ -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l4/proxyproto/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l4/proxyproto/ -run '^$$' -fuzz '^FuzzParseVsGoProxyproto$$' -fuzztime $(FUZZTIME)
	$(GO) test ./l4/proxyproto/ -run '^$$' -fuzz '^FuzzIPv6VsNetip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./mailproxy/ -run '^$$' -fuzz '^FuzzParseIMAPLine$$' -fuzztime $(FUZZTIME)
	$(GO) test ./mailproxy/ -run '^$$' -fuzz '^FuzzDecodePlain$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tlsterm/ -run '^$$' -fuzz '^FuzzRecordLayer$$' -fuzztime $(FUZZTIME)

# testssl.sh (installed from Debian when missing) against a TLS listener
# with a throwaway test CA; fails on any CRITICAL, HIGH or MEDIUM finding.
tlscheck: build
	./scripts/tlscheck.sh $(BIN)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin run
