package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"frontdoor/kerberos"
	"frontdoor/l7"
)

// collector exports the gateway's counters to Prometheus. It owns no
// counter: every value is read at scrape time from the atomics the data path
// already keeps (l4 listeners and core, l7 Stats, poolmux Stats, tlsterm
// Stats, the authenticator, the access log), and handed to the registry as
// constant metrics. Instrumenting this way costs the event loops nothing
// beyond the atomic adds they did anyway: no Prometheus call, lock or map
// lookup is on the request path.
type collector struct {
	g *Gateway

	connOpen, connAccepted, connRefused, refusals, timeouts *prometheus.Desc

	requests, responses, rerouted, rejections, latency *prometheus.Desc

	backendConns, backendInFlight, backendQueued, backendDials, backendDialFailures,
	backendRequests, backendWrites, backendRetries, backendDetached, backendRetired, backendQueueRejections,
	backendFailures, backendLatency *prometheus.Desc
	backendChannels, channelsTotal *prometheus.Desc

	authResults, authChallenges, authThrottled, authOverloaded, authCoalesced, authCacheHits, authCacheMisses,
	authCacheEntries, authVerifications, identitySigned *prometheus.Desc
	negotiateRefused, negotiateReuse, negotiateReplayEntries, negotiateReplayEvicted *prometheus.Desc

	tlsHandshakes, tlsResumed, tlsPostQuantum, tlsClientCerts, tlsByGroup, tlsByVersion,
	tlsByCipher, tlsFailures, tlsRunning, tlsQueued *prometheus.Desc

	backendTLSHandshakes, backendTLSResumed, backendTLSByGroup, backendTLSFailures *prometheus.Desc

	accessRecords, accessDropped, accessBytes *prometheus.Desc

	trims, trimmedBytes, component *prometheus.Desc

	mailOpen, mailRelaying, mailEvents, mailBytes *prometheus.Desc
	mailHalfClosed                                *prometheus.Desc

	all []*prometheus.Desc
}

func newCollector(g *Gateway) *collector {
	c := &collector{g: g}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		desc := prometheus.NewDesc("frontdoor_"+name, help, labels, nil)
		c.all = append(c.all, desc)
		return desc
	}
	c.connOpen = d("client_connections_open", "Client connections open now.", "listener")
	c.connAccepted = d("client_connections_accepted_total", "Client connections accepted, refused ones included.", "listener")
	c.connRefused = d("client_connections_refused_total", "Client connections closed right after accept (connection limit or drain).", "listener")
	c.refusals = d("connection_refusals_total", "Client connections refused at accept, by reason (max_connections, draining).", "reason")
	c.timeouts = d("timeouts_total", "Client connections that ran out of a timeout, by class (header_read, body_read, idle, write).", "class")

	c.requests = d("http_requests_total", "Requests read in full and routed or answered.")
	c.responses = d("http_responses_total", "Responses sent, by protocol (none: no protocol matched, or refused before the path was known) and status class.", "protocol", "code_class")
	c.rerouted = d("http_rerouted_total", "Requests moved to their mailbox's new server after the old one failed them.")
	c.rejections = d("http_rejections_total", "Requests or exchanges refused or cut, by reason (framing, limits, timeouts, backend failures, client gone).", "reason")
	c.latency = d("http_request_duration_seconds", "Time from a request's head being parsed to its response being complete, for requests served with a complete response.", "protocol")

	be := []string{"server", "address"}
	c.backendConns = d("backend_connections_open", "Backend connections open now.", be...)
	c.backendInFlight = d("backend_requests_in_flight", "Requests written to a backend connection whose response has not ended.", be...)
	c.backendQueued = d("backend_requests_queued", "Requests waiting for a backend connection.", be...)
	c.backendDials = d("backend_dials_total", "Backend connection dials started.", be...)
	c.backendDialFailures = d("backend_dial_failures_total", "Backend dials that failed (TLS handshakes included).", be...)
	c.backendRequests = d("backend_requests_total", "Requests written to a backend connection.", be...)
	c.backendWrites = d("backend_writes_total", "Writes that carried requests to the server; below backend_requests_total when queued requests went out together in one writev.", be...)
	c.backendRetries = d("backend_retries_total", "Replayable requests moved to another connection after a failure.", be...)
	c.backendDetached = d("backend_connections_detached_total", "Backend connections taken off the pool for a slow client.", be...)
	c.backendRetired = d("backend_connections_retired_total", "Backend connections drained because the server lost its active databases.", be...)
	c.backendQueueRejections = d("backend_queue_rejections_total", "Requests answered 503 by the backend queue, by reason (full, timeout).", "server", "address", "reason")
	c.backendFailures = d("backend_failures_total", "Requests failed with 502 or 504 by the backend pool.", be...)
	c.backendChannels = d("backend_channels_open", "Long-lived channels (RPC over HTTP, MAPI NotificationWait) open now on dedicated backend connections.", be...)
	c.channelsTotal = d("channels_total", "Long-lived channels opened (RPC over HTTP, MAPI NotificationWait, protocol stream methods).")
	c.backendLatency = d("backend_response_duration_seconds", "Time from a request being written to a backend connection to the server's response being complete.", be...)

	c.authResults = d("auth_results_total", "Authenticated requests by method and result (accepted, refused).", "method", "result")
	c.authChallenges = d("auth_challenges_total", "Requests answered 401 because they carried no usable credentials.")
	c.authThrottled = d("auth_throttled_total", "Requests answered 429: too many failed logins.")
	c.authOverloaded = d("auth_overloaded_total", "Requests answered 503: the verification queue was full.")
	c.authCoalesced = d("auth_coalesced_total", "Requests that waited for a verification of the same credential already running.")
	c.authCacheHits = d("auth_cache_hits_total", "Credentials found in the auth cache.")
	c.authCacheMisses = d("auth_cache_misses_total", "Credentials not in the auth cache, sent to a verification worker.")
	c.authCacheEntries = d("auth_cache_entries", "Verdicts in the auth cache now.")
	c.authVerifications = d("auth_verifications_total", "Expensive credential verifications run (argon2id, bcrypt, JWT).")
	c.identitySigned = d("identity_assertions_signed_total", "Identity assertions signed for mailbox servers.")
	c.negotiateRefused = d("auth_negotiate_refused_total", "Negotiate (Kerberos) tokens refused, by reason (bad_token, too_large, ntlm, wrong_service, no_key, expired, skew, replay, unknown_principal).", "reason")
	c.negotiateReuse = d("auth_negotiate_connection_reuse_total", "Requests authenticated by their connection's earlier Negotiate authentication.")
	c.negotiateReplayEntries = d("auth_negotiate_replay_entries", "Kerberos authenticators held by the replay cache now.")
	c.negotiateReplayEvicted = d("auth_negotiate_replay_evicted_total", "Live replay-cache entries dropped because the cache was full.")

	c.tlsHandshakes = d("tls_handshakes_total", "TLS handshakes completed, full and resumed.", "listener")
	c.tlsResumed = d("tls_handshakes_resumed_total", "TLS handshakes that resumed a session from a ticket.", "listener")
	c.tlsPostQuantum = d("tls_handshakes_post_quantum_total", "TLS handshakes whose key exchange was a hybrid with ML-KEM.", "listener")
	c.tlsClientCerts = d("tls_client_certificates_total", "TLS handshakes with a verified client certificate.", "listener")
	c.tlsByGroup = d("tls_handshakes_by_group_total", "TLS handshakes completed, by key-exchange group (none: a TLS 1.2 resumption).", "listener", "group")
	c.tlsByVersion = d("tls_handshakes_by_version_total", "TLS handshakes completed, by protocol version.", "listener", "version")
	c.tlsByCipher = d("tls_handshakes_by_cipher_total", "TLS handshakes completed, by cipher suite.", "listener", "cipher")
	c.tlsFailures = d("tls_handshake_failures_total", "TLS handshakes that failed, by reason.", "listener", "reason")
	c.tlsRunning = d("tls_handshakes_running", "TLS handshakes holding a handshake slot now.", "listener")
	c.tlsQueued = d("tls_handshakes_queued", "TLS connections waiting for a handshake slot now.", "listener")

	c.backendTLSHandshakes = d("backend_tls_handshakes_total", "TLS handshakes with mailbox servers completed.")
	c.backendTLSResumed = d("backend_tls_handshakes_resumed_total", "TLS handshakes with mailbox servers that resumed a session.")
	c.backendTLSByGroup = d("backend_tls_handshakes_by_group_total", "TLS handshakes with mailbox servers, by key-exchange group.", "group")
	c.backendTLSFailures = d("backend_tls_handshake_failures_total", "TLS handshakes with mailbox servers that failed, by reason.", "reason")

	c.accessRecords = d("access_log_records_total", "Access log records written.")
	c.accessDropped = d("access_log_dropped_total", "Access log records dropped, by reason (buffer_full: the writer fell behind; write_error: the file refused them).", "reason")
	c.accessBytes = d("access_log_bytes_total", "Bytes written to the access log.")

	c.trims = d("memory_trims_total", "Memory trims (garbage collected and free pages returned), by trigger (auto, admin).", "trigger")
	c.trimmedBytes = d("memory_trimmed_bytes_total", "Bytes returned to the kernel by memory trims.")
	c.component = d("component_active", "1 when a gateway component is active, 0 when it was taken out of service.", "component")

	c.mailOpen = d("mail_sessions_open", "IMAP and POP3 client sessions open now.")
	c.mailRelaying = d("mail_sessions_relaying", "IMAP and POP3 sessions logged in and relaying now.")
	c.mailEvents = d("mail_events_total", "IMAP and POP3 events (sessions, logins_ok, logins_failed, throttled, starttls, backend_failed, failover_closed, timeouts, overflow, halfcloses, halfcloses_server, halfclose_lost; docs/mail.md).", "event")
	c.mailHalfClosed = d("mail_sessions_half_closed", "IMAP and POP3 sessions going on after one side half-closed, now (each holds a duplicate descriptor and a goroutine; docs/mail.md).")
	c.mailBytes = d("mail_relayed_bytes_total", "Bytes relayed after login, by direction (up: client to server).", "direction")
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one read of every counter.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}

	for _, ln := range g.server.Listeners() {
		gauge(c.connOpen, ln.Open.Load(), ln.Name)
		counter(c.connAccepted, ln.Accepted.Load(), ln.Name)
		counter(c.connRefused, ln.Refused.Load(), ln.Name)
	}
	for _, nv := range g.server.Stats().Snapshot() {
		if r, ok := strings.CutPrefix(nv.Name, "refused_"); ok {
			counter(c.refusals, nv.Value, r)
		} else if cl, ok := strings.CutPrefix(nv.Name, "timeout_"); ok {
			counter(c.timeouts, nv.Value, cl)
		}
	}

	// The current generation's view: the HTTP and pool counters are shared
	// with the generations a reload replaced; TLS and auth counters are
	// the current terminators' and authenticator's.
	cur := g.current()
	st := cur.handler.Stats()
	counter(c.requests, st.Requests.Load())
	counter(c.rerouted, st.Rerouted.Load())
	for p := range st.ByProtocol {
		name := c.protocolName(p)
		for class := 1; class <= 5; class++ {
			counter(c.responses, st.ByProtocol[p][class].Load(), name, classNames[class])
		}
		histogram(ch, c.latency, &st.Latency[p], name)
	}
	for reason, v := range st.Rejects {
		counter(c.rejections, v.Load(), reason)
	}

	counter(c.channelsTotal, st.ChannelsTotal.Load())
	for i, ep := range cur.handler.Endpoints() {
		ps := cur.handler.PoolStats(i)
		gauge(c.backendConns, ps.ConnsOpen.Load(), ep.Name, ep.Addr)
		gauge(c.backendInFlight, ps.InFlight.Load(), ep.Name, ep.Addr)
		gauge(c.backendQueued, ps.Queued.Load(), ep.Name, ep.Addr)
		counter(c.backendDials, ps.Dials.Load(), ep.Name, ep.Addr)
		counter(c.backendDialFailures, ps.DialFailures.Load(), ep.Name, ep.Addr)
		counter(c.backendRequests, ps.Requests.Load(), ep.Name, ep.Addr)
		counter(c.backendWrites, ps.Writes.Load(), ep.Name, ep.Addr)
		counter(c.backendRetries, ps.Retries.Load(), ep.Name, ep.Addr)
		counter(c.backendDetached, ps.Detached.Load(), ep.Name, ep.Addr)
		counter(c.backendRetired, ps.Retired.Load(), ep.Name, ep.Addr)
		counter(c.backendQueueRejections, ps.QueueFull.Load(), ep.Name, ep.Addr, "full")
		counter(c.backendQueueRejections, ps.QueueTimeout.Load(), ep.Name, ep.Addr, "timeout")
		counter(c.backendFailures, ps.Failed.Load(), ep.Name, ep.Addr)
		gauge(c.backendChannels, cur.handler.OpenChannels(i), ep.Name, ep.Addr)
		histogram(ch, c.backendLatency, &st.BackendLatency[i], ep.Name, ep.Addr)
	}

	if a := cur.router.auth; a != nil {
		s := &a.stats
		for i, m := range []string{"basic", "bearer", "certificate", "negotiate"} {
			counter(c.authResults, s.Accepted[i].Load(), m, "accepted")
			counter(c.authResults, s.Refused[i].Load(), m, "refused")
		}
		if n := a.krb; n != nil {
			for r := kerberos.Reason(0); r < kerberos.NumReasons; r++ {
				counter(c.negotiateRefused, n.refused[r].Load(), r.String())
			}
			counter(c.negotiateReuse, n.reused.Load())
			gauge(c.negotiateReplayEntries, int64(n.replay.Len()))
			counter(c.negotiateReplayEvicted, n.replay.Evicted())
		}
		counter(c.authChallenges, s.Challenged.Load())
		counter(c.authThrottled, s.Throttled.Load())
		counter(c.authOverloaded, s.Overloaded.Load())
		counter(c.authCoalesced, s.Coalesced.Load())
		counter(c.authCacheHits, s.CacheHits.Load())
		counter(c.authCacheMisses, s.CacheMisses.Load())
		gauge(c.authCacheEntries, int64(a.cache.Len()))
		counter(c.authVerifications, s.Verifications.Load())
		counter(c.identitySigned, s.Signed.Load())
	}

	for i, ln := range cur.cfg.Listeners {
		if i >= len(cur.tls) || cur.tls[i] == nil {
			continue
		}
		ts := cur.tls[i].t.Stats()
		counter(c.tlsHandshakes, ts.Handshakes.Load(), ln.Name)
		counter(c.tlsResumed, ts.Resumed.Load(), ln.Name)
		counter(c.tlsPostQuantum, ts.PostQuantum.Load(), ln.Name)
		counter(c.tlsClientCerts, ts.ClientCertificates.Load(), ln.Name)
		gauge(c.tlsRunning, ts.Running.Load(), ln.Name)
		gauge(c.tlsQueued, ts.Queued.Load(), ln.Name)
		// The breakdowns by name come from the documented Snapshot keys
		// (version.*, cipher.*, group.*, failure.*).
		for k, v := range ts.Snapshot() {
			kind, name, _ := strings.Cut(k, ".")
			switch kind {
			case "version":
				counter(c.tlsByVersion, v, ln.Name, name)
			case "cipher":
				counter(c.tlsByCipher, v, ln.Name, name)
			case "group":
				counter(c.tlsByGroup, v, ln.Name, name)
			case "failure":
				counter(c.tlsFailures, v, ln.Name, name)
			}
		}
	}
	if cur.upstream != nil {
		bs := cur.upstream.client.Stats()
		counter(c.backendTLSHandshakes, bs.Handshakes.Load())
		counter(c.backendTLSResumed, bs.Resumed.Load())
		for k, v := range bs.Snapshot() {
			kind, name, _ := strings.Cut(k, ".")
			switch kind {
			case "group":
				counter(c.backendTLSByGroup, v, name)
			case "failure":
				counter(c.backendTLSFailures, v, name)
			}
		}
	}

	g.mu.Lock()
	ms := g.mailStats
	g.mu.Unlock()
	if ms != nil {
		for k, v := range ms.Snapshot() {
			switch k {
			case "open":
				gauge(c.mailOpen, v)
			case "relaying":
				gauge(c.mailRelaying, v)
			case "halfclosed":
				gauge(c.mailHalfClosed, v)
			case "bytes_up":
				counter(c.mailBytes, v, "up")
			case "bytes_down":
				counter(c.mailBytes, v, "down")
			default:
				counter(c.mailEvents, v, k)
			}
		}
	}

	if al := g.accessLog; al != nil {
		s := al.Stats()
		counter(c.accessRecords, s.Records.Load())
		counter(c.accessDropped, s.DroppedFull.Load(), "buffer_full")
		counter(c.accessDropped, s.DroppedError.Load(), "write_error")
		counter(c.accessBytes, s.Bytes.Load())
	}

	counter(c.trims, g.trim.trims.Load(), "auto")
	counter(c.trims, g.trim.manual.Load(), "admin")
	counter(c.trimmedBytes, g.trim.released.Load())

	// Component states (ServerWideOffline and one per protocol, see
	// state.go): 1 active, 0 inactive.
	for _, st := range g.ComponentStates() {
		v := int64(0)
		if st.State == "active" {
			v = 1
		}
		gauge(c.component, v, st.Component)
	}
}

var classNames = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// protocolName is the protocol label of l7 Stats row p.
func (c *collector) protocolName(p int) string {
	if cfg := c.g.Config(); p < len(cfg.Protocols) {
		return cfg.Protocols[p].Name
	}
	return "none"
}

// histogram exports an l7 latency histogram as a Prometheus histogram.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h *l7.Histogram, labels ...string) {
	s := h.Read()
	buckets := make(map[float64]uint64, len(l7.LatencyBuckets))
	for i, le := range l7.LatencyBuckets {
		buckets[le] = s.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(d, s.Count, s.Sum, buckets, labels...)
}

// metricsHandler serves /metrics: the gateway's collector, plus the Go
// runtime's and the process's standard metrics (go_*, process_*), from a
// registry of its own (several gateways may share a test process).
func (g *Gateway) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(g),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{g},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// slogPrinter routes promhttp's error lines to the gateway's log.
type slogPrinter struct{ g *Gateway }

// Println implements promhttp.Logger.
func (p slogPrinter) Println(v ...any) {
	p.g.log.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
