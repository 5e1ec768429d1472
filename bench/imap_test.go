package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"frontdoor/internal/dovecot"
	"frontdoor/internal/testbed"
)

func TestLiteralSize(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {10485760}\r\n", 10485760, true},
		{"* 1 FETCH (BODY[] {0}\r\n", 0, true},
		{"* OK done\r\n", 0, false},
		{"* 1 FETCH (BODY[] {x}\r\n", 0, false},
		{"}\r\n", 0, false},
	} {
		n, ok := literalSize([]byte(c.line))
		if n != c.n || ok != c.ok {
			t.Errorf("literalSize(%q) = %d, %v; want %d, %v", c.line, n, ok, c.n, c.ok)
		}
	}
}

// TestIMAPScenariosDovecot runs every IMAP scenario at tiny sizes (4
// connections, 300 ms, 20 idle sessions) with the real gateway in front of
// a real Dovecot; skipped only when Dovecot is not installed.
func TestIMAPScenariosDovecot(t *testing.T) {
	if err := dovecot.Installed(); err != nil {
		t.Skip(err)
	}
	var names []string
	for _, sc := range Scenarios {
		if sc.IMAP != IMAPNone {
			names = append(names, sc.Name)
		}
	}
	o := testSuiteOptions(t, names...)
	for i := range o.scenarios {
		if o.scenarios[i].Conns > 0 {
			o.scenarios[i].Conns = 4
		}
	}
	o.binary = testbed.Binary(t)
	o.idleConns, o.idleSettle = 20, 0
	// Fewer users: each gateway start verifies every one once (argon2id).
	defer func(n int) { imapUsers = n }(imapUsers)
	imapUsers = 8
	var stdout, stderr bytes.Buffer
	if code := runSuite(context.Background(), o, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	rep := readReport(t, o.jsonFile)
	rows := map[string]RunReport{}
	for _, rr := range rep.Results {
		rows[rr.Scenario+"/"+rr.Target] = rr
		if rr.Error != "" || rr.Requests == 0 || rr.ErrorsTotal != 0 || rr.IMAP == nil {
			t.Errorf("%s/%s: error %q, %d ok, errors %s, imap %v", rr.Scenario, rr.Target, rr.Error, rr.Requests, rr.Errors, rr.IMAP)
		}
	}
	for _, want := range []string{"imap-login/direct", "imap-login/gateway", "imap-login-tls/gateway", "imap-fetch-10m/direct",
		"imap-fetch-10m/gateway", "idle-conns-imap/gateway", "idle-conns-imap-tls/gateway", "idle-conns-imap-prelogin/gateway"} {
		if _, ok := rows[want]; !ok {
			t.Errorf("no row %s", want)
		}
	}
	if rr := rows["imap-fetch-10m/gateway"]; rr.IMAP == nil || rr.IMAP.BytesFetched != rr.Requests*imapMessageBytes || rr.IMAP.GatewayCPUPerMiBUS == nil {
		t.Errorf("imap-fetch-10m/gateway: %+v", rr.IMAP)
	}
	if rr := rows["imap-login/gateway"]; rr.GatewayCPUPerRequestUS == nil || rr.IMAP == nil || rr.IMAP.GatewayMail["logins_ok"] < rr.Requests {
		t.Errorf("imap-login/gateway: CPU %v, mail counters %+v, %d logins", rr.GatewayCPUPerRequestUS, rr.IMAP, rr.Requests)
	}
	if rr := rows["imap-login-tls/gateway"]; !rr.TLS || rr.Handshakes < rr.Requests {
		t.Errorf("imap-login-tls/gateway: TLS %v, %d handshakes for %d logins", rr.TLS, rr.Handshakes, rr.Requests)
	}
	for _, name := range []string{"idle-conns-imap", "idle-conns-imap-tls", "idle-conns-imap-prelogin"} {
		rr := rows[name+"/gateway"]
		if rr.Idle == nil || rr.Idle.Held != 20 || rr.Idle.GatewayFDsHeld == nil {
			t.Errorf("%s: %+v", name, rr.Idle)
			continue
		}
		per := 2
		if name == "idle-conns-imap-prelogin" {
			per = 1
		}
		// Other descriptors may close meanwhile (a backend connection, a probe).
		if grew := *rr.Idle.GatewayFDsHeld - *rr.Idle.GatewayFDsBefore; grew < per*20-3 {
			t.Errorf("%s: gateway descriptors grew by %d for 20 sessions, want %d", name, grew, per*20)
		}
	}
	if !strings.Contains(stdout.String(), "REQ/S is logins/s") || !strings.Contains(stdout.String(), "MiB/s relayed") {
		t.Errorf("table lacks the IMAP notes:\n%s", stdout.String())
	}
}
