package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/gateway/config"
	"frontdoor/l7"
	"frontdoor/poolmux"
)

// Backend health: every mailbox server endpoint (host:port, one per
// server when all protocols share its port) is checked actively, GET
// /healthcheck.htm on a fresh connection every health_interval, and
// passively, by the failures the loops see on live traffic. A server that
// fails unhealthy_threshold checks in a row, or outlier_consecutive_failures
// requests in a row, is marked unhealthy: the router answers 503 for its
// mailboxes. healthy_threshold good checks in a row bring it back.
//
// The loops read an endpoint's health from its poolmux.Health (an atomic);
// everything else (counters, reasons, transitions, the log) belongs to the
// checker's goroutine and the mutex of each endpoint.

// healthCheckPath is what the active checks ask a mailbox server for.
const healthCheckPath = "/healthcheck.htm"

// maxParallelChecks bounds the checks running at once.
const maxParallelChecks = 16

// backendHealth checks the endpoints and keeps their health.
type backendHealth struct {
	log            *slog.Logger
	interval       time.Duration // 0: no checks, every endpoint healthy
	timeout        time.Duration
	unhealthyAfter int
	healthyAfter   int
	eps            []*endpointHealth

	// wake is signalled (without blocking) by a loop that ejected an
	// endpoint, so the checker logs it and updates the health pages.
	wake chan struct{}
	// changed is called after every transition (the health pages).
	changed func()
	// revive is called with an endpoint's index when it becomes healthy
	// (l7.Handler.Revive: its pools stop waiting out their backoff).
	revive func(endpoint int)
}

// endpointHealth is one endpoint's health.
type endpointHealth struct {
	index  int
	server string
	addr   string
	tls    *poolmux.TLS
	health *poolmux.Health
	// ejected holds the reason of a passive ejection a loop made and the
	// checker has not seen yet.
	ejected atomic.Pointer[string]

	mu        sync.Mutex
	healthy   bool
	fails     int // consecutive failed checks while healthy
	oks       int // consecutive good checks while unhealthy
	checking  bool
	lastCheck time.Time
	lastError string // of the last check, "" when it passed
	reason    string // why it is unhealthy
	since     time.Time
	ejections int64
}

// newBackendHealth makes the health of every endpoint and sets it on the
// endpoints (l7 reads it there).
func newBackendHealth(cfg *config.Config, endpoints []l7.Endpoint, log *slog.Logger) *backendHealth {
	b := &cfg.Backend
	bh := &backendHealth{
		log: log, interval: b.HealthInterval.D(), timeout: b.HealthTimeout.D(),
		unhealthyAfter: b.UnhealthyThreshold, healthyAfter: b.HealthyThreshold,
		wake: make(chan struct{}, 1), changed: func() {}, revive: func(int) {},
	}
	threshold := b.OutlierConsecutiveFailures
	if bh.interval == 0 {
		// Nothing would bring an ejected server back.
		threshold = 0
	}
	for i := range endpoints {
		ep := &endpointHealth{index: i, server: endpoints[i].Name, addr: endpoints[i].Addr, tls: endpoints[i].TLS, healthy: true}
		ep.health = poolmux.NewHealth(threshold, func(reason string) { bh.eject(ep, reason) })
		endpoints[i].Health = ep.health
		bh.eps = append(bh.eps, ep)
	}
	return bh
}

// healthy reports whether endpoint i may get new requests.
func (bh *backendHealth) healthy(i int) bool { return bh.eps[i].health.Healthy() }

// eject runs on the loop whose request made the endpoint an outlier: new
// requests stop at once; the checker logs it and updates the pages.
func (bh *backendHealth) eject(ep *endpointHealth, reason string) {
	ep.health.SetHealthy(false)
	ep.ejected.Store(&reason)
	select {
	case bh.wake <- struct{}{}:
	default:
	}
}

// run checks the endpoints until ctx ends.
func (bh *backendHealth) run(ctx context.Context) {
	if bh.interval == 0 || len(bh.eps) == 0 {
		return
	}
	results := make(chan checkResult, len(bh.eps)) // never blocks a check
	sem := make(chan struct{}, maxParallelChecks)
	var wg sync.WaitGroup
	defer wg.Wait()
	round := func() {
		for _, ep := range bh.eps {
			ep.mu.Lock()
			busy := ep.checking // a check still running from the last round
			ep.checking = true
			ep.mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				results <- checkResult{ep, bh.check(ctx, ep), time.Now()}
			}()
		}
	}
	tick := time.NewTicker(bh.interval)
	defer tick.Stop()
	round()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			round()
		case r := <-results:
			bh.record(r)
		case <-bh.wake:
			bh.takeEjections()
		}
	}
}

type checkResult struct {
	ep  *endpointHealth
	err error // nil: the server answered 2xx
	at  time.Time
}

// check asks ep for its health page on a new connection, within the
// health timeout. Only the status line and head are read.
func (bh *backendHealth) check(ctx context.Context, ep *endpointHealth) error {
	ctx, cancel := context.WithTimeout(ctx, bh.timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ep.addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	conn := nc
	if ep.tls != nil {
		tc := tls.Client(nc, ep.tls.Current())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	req := "GET " + healthCheckPath + " HTTP/1.1\r\nHost: " + ep.addr + "\r\nUser-Agent: frontdoor-health\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", healthCheckPath, resp.Status)
	}
	return nil
}

// record applies a check's result to its endpoint.
func (bh *backendHealth) record(r checkResult) {
	ep := r.ep
	ep.mu.Lock()
	ep.checking = false
	ep.lastCheck = r.at
	ep.lastError = ""
	var became string // "healthy", "unhealthy" or ""
	if r.err == nil {
		ep.fails = 0
		if !ep.healthy {
			if ep.oks++; ep.oks >= bh.healthyAfter {
				ep.healthy, ep.oks, ep.reason, ep.since = true, 0, "", r.at
				ep.health.SetHealthy(true)
				became = "healthy"
			}
		}
	} else {
		ep.lastError = r.err.Error()
		ep.oks = 0
		if ep.healthy {
			if ep.fails++; ep.fails >= bh.unhealthyAfter {
				ep.healthy, ep.fails, ep.since = false, 0, r.at
				ep.reason = strconv.Itoa(bh.unhealthyAfter) + " consecutive failed health checks, the last: " + ep.lastError
				ep.health.SetHealthy(false)
				became = "unhealthy"
			}
		}
	}
	reason := ep.reason
	ep.mu.Unlock()
	switch became {
	case "healthy":
		bh.revive(ep.index)
		bh.log.Info("mailbox server healthy again: new requests go to it",
			"server", ep.server, "address", ep.addr, "good_checks", bh.healthyAfter)
	case "unhealthy":
		bh.log.Warn("mailbox server unhealthy: its mailboxes get 503 until it passes its health checks",
			"server", ep.server, "address", ep.addr, "reason", reason)
	default:
		return
	}
	bh.changed()
}

// takeEjections records the passive ejections the loops made.
func (bh *backendHealth) takeEjections() {
	seen := false
	for _, ep := range bh.eps {
		r := ep.ejected.Swap(nil)
		if r == nil {
			continue
		}
		seen = true
		ep.mu.Lock()
		ep.ejections++
		ep.oks, ep.fails = 0, 0
		ep.reason = "outlier: consecutive failures on live traffic, the last: " + *r
		if ep.healthy {
			ep.healthy, ep.since = false, time.Now()
		}
		reason := ep.reason
		ep.mu.Unlock()
		// The loop marked it already; the checker's view follows, so
		// only good checks bring it back.
		ep.health.SetHealthy(false)
		bh.log.Warn("mailbox server unhealthy: its mailboxes get 503 until it passes its health checks",
			"server", ep.server, "address", ep.addr, "reason", reason)
	}
	if seen {
		bh.changed()
	}
}

// BackendHealth is one endpoint's health on /stats.
type BackendHealth struct {
	Healthy bool `json:"healthy"`
	// Since is when it last became healthy or unhealthy (zero: healthy
	// since the start).
	Since time.Time `json:"since,omitzero"`
	// Reason says why it is unhealthy.
	Reason string `json:"reason,omitempty"`
	// LastCheck is when the last active check ended, LastError its
	// failure ("" when it passed).
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Ejections counts passive ejections (outlier detection).
	Ejections int64 `json:"ejections"`
}

// summary is endpoint i's health for /stats.
func (bh *backendHealth) summary(i int) BackendHealth {
	ep := bh.eps[i]
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return BackendHealth{Healthy: ep.health.Healthy(), Since: ep.since, Reason: ep.reason,
		LastCheck: ep.lastCheck, LastError: ep.lastError, Ejections: ep.ejections}
}
