package gateway_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/l7"
)

// scrape fetches /metrics with a real HTTP client and parses the text
// exposition format.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// scrapeSettled scrapes until no backend request is in flight, for at most
// two seconds. A client can have read its whole response a moment before
// the loop has finished the exchange's bookkeeping (latency histograms,
// the in-flight gauge), which follows the write; the gauge falls last.
func scrapeSettled(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		fams := scrape(t, admin)
		busy := false
		if f := fams["frontdoor_backend_requests_in_flight"]; f != nil {
			for _, m := range f.Metric {
				busy = busy || m.GetGauge().GetValue() != 0
			}
		}
		if !busy || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric finds the sample of family name whose labels include want
// ("k=v" pairs); nil when there is none.
func metric(fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value; -1 when the sample is missing.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := metric(fams, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

func adminExtra(t *testing.T) string {
	return fmt.Sprintf("[admin]\naddress = \"127.0.0.1:%d\"\n", testbed.FreePort(t, "127.0.0.1"))
}

// TestMetricsMatchTraffic drives known traffic (authenticated requests, a
// wrong password, a missing credential, an unknown path, a framing error)
// and checks that /metrics tells exactly that.
func TestMetricsMatchTraffic(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{ProtocolExtra: `auth = ["basic"]`, Extra: adminExtra(t)}, m1)
	c := g.Dial(t)
	send := func(req string, want int) {
		t.Helper()
		c.Send(t, req)
		resp, _ := readResponse(t, c, "GET")
		if resp.StatusCode != want {
			t.Fatalf("%q: %d, want %d", req, resp.StatusCode, want)
		}
	}
	good := "GET /owa/ HTTP/1.1\r\nHost: h\r\nAuthorization: " + basic("alice", gwtest.Password) + "\r\n\r\n"
	for range 3 {
		send(good, 200)
	}
	send("GET /EWS/x HTTP/1.1\r\nHost: h\r\nAuthorization: "+basic("alice", "wrong")+"\r\n\r\n", 401)
	send("GET /EWS/x HTTP/1.1\r\nHost: h\r\n\r\n", 401)
	send("GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n", 404)
	bad := g.Dial(t)
	bad.Send(t, "POST /owa/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
	if resp, _ := readResponse(t, bad, "POST"); resp.StatusCode != 400 {
		t.Fatalf("CL+TE: %d", resp.StatusCode)
	}
	expectClosed(t, bad)

	fams := scrapeSettled(t, g.AdminAddr())
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"frontdoor_http_requests_total", nil, 6},
		{"frontdoor_http_responses_total", []string{"protocol=owa", "code_class=2xx"}, 3},
		{"frontdoor_http_responses_total", []string{"protocol=owa", "code_class=4xx"}, 0},
		{"frontdoor_http_responses_total", []string{"protocol=ews", "code_class=4xx"}, 2},
		{"frontdoor_http_responses_total", []string{"protocol=none", "code_class=4xx"}, 2},
		{"frontdoor_http_rejections_total", []string{"reason=content_length_and_transfer_encoding"}, 1},
		{"frontdoor_auth_results_total", []string{"method=basic", "result=accepted"}, 3},
		{"frontdoor_auth_results_total", []string{"method=basic", "result=refused"}, 1},
		{"frontdoor_auth_challenges_total", nil, 1},
		{"frontdoor_auth_verifications_total", nil, 2},
		{"frontdoor_client_connections_accepted_total", []string{"listener=http"}, 2},
		{"frontdoor_client_connections_refused_total", []string{"listener=http"}, 0},
		{"frontdoor_backend_requests_total", []string{"server=mbx1", "address=" + m1.Addr()}, 3},
		{"frontdoor_backend_requests_in_flight", []string{"server=mbx1"}, 0},
		{"frontdoor_backend_requests_queued", []string{"server=mbx1"}, 0},
		{"frontdoor_access_log_records_total", nil, -1}, // the log is off: not exported
	}
	for _, ck := range checks {
		if got := value(fams, ck.name, ck.labels...); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
	if v := value(fams, "frontdoor_client_connections_open", "listener=http"); v != 1 {
		t.Errorf("open connections: %v, want 1 (the framing error's was closed)", v)
	}
	if v := value(fams, "frontdoor_backend_connections_open", "server=mbx1"); v < 1 {
		t.Errorf("backend connections open: %v", v)
	}
	if reason := fams["frontdoor_http_rejections_total"]; reason == nil || len(reason.Metric) < 10 {
		t.Errorf("every rejection reason should be exported, even at 0")
	}

	// Latency: one observation per served request, by protocol; the
	// framing error was not served. The backend histogram saw the three
	// proxied ones.
	hist := func(name string, labels ...string) *dto.Histogram {
		m := metric(fams, name, labels...)
		if m == nil || m.Histogram == nil {
			t.Fatalf("%s%v missing", name, labels)
		}
		return m.Histogram
	}
	var served uint64
	for proto, want := range map[string]uint64{"owa": 3, "ews": 2, "none": 1, "mapi": 0} {
		h := hist("frontdoor_http_request_duration_seconds", "protocol="+proto)
		if h.GetSampleCount() != want {
			t.Errorf("latency count for %s: %d, want %d", proto, h.GetSampleCount(), want)
		}
		served += h.GetSampleCount()
		// The parser adds the +Inf bucket, which holds the count.
		if len(h.Bucket) != len(l7.LatencyBuckets)+1 || h.Bucket[len(h.Bucket)-1].GetCumulativeCount() != h.GetSampleCount() {
			t.Errorf("%d buckets, want %d and +Inf", len(h.Bucket), len(l7.LatencyBuckets))
		}
		// Cumulative and bounded by the count.
		prev := uint64(0)
		for _, b := range h.Bucket {
			if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > h.GetSampleCount() {
				t.Errorf("%s buckets not cumulative: %v", proto, h.Bucket)
			}
			prev = b.GetCumulativeCount()
		}
	}
	if served != 6 {
		t.Errorf("latency histograms hold %d requests, requests_total says 6", served)
	}
	owa := hist("frontdoor_http_request_duration_seconds", "protocol=owa")
	if s := owa.GetSampleSum(); s <= 0 || s > 30 {
		t.Errorf("owa latency sum %v s", s)
	}
	be := hist("frontdoor_backend_response_duration_seconds", "server=mbx1")
	if be.GetSampleCount() != 3 || be.GetSampleSum() <= 0 || be.GetSampleSum() > owa.GetSampleSum() {
		t.Errorf("backend latency: count %d sum %v (client-side sum %v)", be.GetSampleCount(), be.GetSampleSum(), owa.GetSampleSum())
	}

	// Every family follows the naming rules, and the standard Go and
	// process collectors are there.
	var names []string
	for name, f := range fams {
		names = append(names, name)
		if !strings.HasPrefix(name, "frontdoor_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			t.Errorf("unexpected family %s", name)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s without _total", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
	}
	sort.Strings(names)
	for _, want := range []string{"go_goroutines", "process_resident_memory_bytes", "frontdoor_memory_trims_total"} {
		if fams[want] == nil {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}

// TestMetricsInFlightAndComponents checks the backend in-flight gauge while
// a server is slow, and the component states.
func TestMetricsInFlightAndComponents(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	g := gwtest.Start(t, gwtest.Options{Loops: 1, Extra: adminExtra(t)}, m1)
	if v := value(scrape(t, g.AdminAddr()), "frontdoor_component_active", "component=ews"); v != 1 {
		t.Fatalf("component ews before it was set inactive: %v, want 1", v)
	}
	if _, err := g.SetComponentState("ews", "inactive", "test"); err != nil {
		t.Fatal(err)
	}
	const slow = 3
	done := make(chan int, slow)
	for range slow {
		c := g.Dial(t)
		c.Send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Delay: 1s\r\n\r\n")
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			resp, err := http.ReadResponse(c.R, nil)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := scrape(t, g.AdminAddr())
		inFlight := value(fams, "frontdoor_backend_requests_in_flight", "server=mbx1")
		queued := value(fams, "frontdoor_backend_requests_queued", "server=mbx1")
		if inFlight+queued == slow && inFlight >= 1 {
			if v := value(fams, "frontdoor_component_active", "component=owa"); v != 1 {
				t.Errorf("component owa: %v, want 1", v)
			}
			if v := value(fams, "frontdoor_component_active", "component=ews"); v != 0 {
				t.Errorf("component ews: %v, want 0", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in flight %v + queued %v, want %d", inFlight, queued, slow)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range slow {
		if s := <-done; s != 200 {
			t.Fatalf("slow request: %d", s)
		}
	}
	fams := scrapeSettled(t, g.AdminAddr())
	if v := value(fams, "frontdoor_backend_requests_in_flight", "server=mbx1"); v != 0 {
		t.Errorf("in flight after the responses: %v", v)
	}
	h := metric(fams, "frontdoor_backend_response_duration_seconds", "server=mbx1").Histogram
	if h.GetSampleCount() != slow || h.GetSampleSum() < slow*1.0 {
		t.Errorf("backend latency of %d one-second responses: count %d sum %v", slow, h.GetSampleCount(), h.GetSampleSum())
	}
	// The one-second responses land in the (0.5, 1] or (1, 2.5] buckets.
	for _, b := range h.Bucket {
		if b.GetUpperBound() <= 0.5 && b.GetCumulativeCount() != 0 {
			t.Errorf("a one-second response in bucket le=%v", b.GetUpperBound())
		}
	}
}

// TestMetricsTLS checks the TLS handshake counters by listener, group and
// resumption.
func TestMetricsTLS(t *testing.T) {
	m1 := testbed.StartMailboxd(t, "mbx1")
	dir := t.TempDir()
	g := gwtest.Start(t, gwtest.Options{TLS: true, CertDir: dir, Extra: adminExtra(t)}, m1)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		c, br := tlsClient(t, g, dir, cache)
		if resp, _ := tlsGet(t, c, br, ""); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		c.Close()
	}
	fams := scrapeSettled(t, g.AdminAddr())
	for _, ck := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"frontdoor_tls_handshakes_total", []string{"listener=http"}, 2},
		{"frontdoor_tls_handshakes_resumed_total", []string{"listener=http"}, 1},
		{"frontdoor_tls_handshakes_by_version_total", []string{"listener=http", "version=tls1.3"}, 2},
		// The resumed handshake still runs a key exchange in TLS 1.3
		// (psk_dhe_ke): both used the post-quantum hybrid.
		{"frontdoor_tls_handshakes_by_group_total", []string{"listener=http", "group=X25519MLKEM768"}, 2},
		{"frontdoor_tls_handshakes_post_quantum_total", []string{"listener=http"}, 2},
		{"frontdoor_tls_handshake_failures_total", []string{"listener=http", "reason=timeout"}, 0},
		{"frontdoor_http_responses_total", []string{"protocol=owa", "code_class=2xx"}, 2},
	} {
		if got := value(fams, ck.name, ck.labels...); got != ck.want {
			t.Errorf("%s%v = %v, want %v", ck.name, ck.labels, got, ck.want)
		}
	}
}
