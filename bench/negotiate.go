package bench

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"frontdoor/internal/krb5kdc"
)

// The negotiate scenarios' realm: a throwaway MIT KDC the suite starts in
// its temporary directory (as the tests do), a service principal whose
// keytab the gateway loads, and alice's principal.
const (
	krbRealm = "BENCH.TEST"
	krbSPN   = "HTTP/mail.example.test"
	krbPass  = "bench-kerberos-password"
	// krbLoginRate sizes negotiate-login's tokens: more than the gateway
	// verifies per second here, so no token is sent twice (a replay,
	// which the gateway would refuse).
	krbLoginRate = 6000
	maxKrbTokens = 200_000
)

// krbFixture is the running realm and a client signed in as alice.
type krbFixture struct {
	kdc    *krb5kdc.KDC
	keytab string
	client *krb5kdc.Client
}

func negotiateSelected(scs []Scenario) bool {
	for _, sc := range scs {
		if isNegotiate(sc.Auth) {
			return true
		}
	}
	return false
}

func isNegotiate(m AuthMode) bool { return m == AuthNegotiateKeepalive || m == AuthNegotiateLogin }

// principal is alice's principal, or "" without a realm.
func (k *krbFixture) principal() string {
	if k == nil {
		return ""
	}
	return authLogin + "@" + krbRealm
}

// startKerberos starts the realm, or notes why the negotiate scenarios
// are skipped and returns nil.
func (s *suite) startKerberos() *krbFixture {
	skip := func(why string) *krbFixture {
		note := "negotiate scenarios skipped: " + why
		s.report.Skipped = append(s.report.Skipped, note)
		fmt.Fprintf(s.stderr, "frontdoor bench: %s\n", note)
		return nil
	}
	if err := krb5kdc.Installed(); err != nil {
		return skip(err.Error())
	}
	dir := filepath.Join(s.dir, "krb5")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return skip(err.Error())
	}
	kdc, err := krb5kdc.Start(dir, krbRealm)
	if err != nil {
		return skip(err.Error())
	}
	k := &krbFixture{kdc: kdc, keytab: filepath.Join(dir, "http.keytab")}
	for _, f := range []func() error{
		func() error { return kdc.AddService(krbSPN) },
		func() error { return kdc.AddUser(authLogin, krbPass) },
		func() error { return kdc.ExportKeytab(k.keytab, krbSPN) },
	} {
		if err := f(); err != nil {
			kdc.Stop()
			return skip(err.Error())
		}
	}
	if k.client, err = kdc.Login(authLogin, krbPass); err != nil {
		kdc.Stop()
		return skip(err.Error())
	}
	fmt.Fprintf(s.stderr, "frontdoor bench: Kerberos realm %s on %s (krb5kdc), service %s\n", krbRealm, kdc.Addr, krbSPN)
	return k
}

func (k *krbFixture) stop() {
	k.client.Destroy()
	k.kdc.Stop()
}

// token returns a new Authorization value: a fresh authenticator for the
// service, so never a replay.
func (k *krbFixture) token() (string, error) {
	tok, err := k.client.Token(krbSPN)
	if err != nil {
		return "", err
	}
	return "Negotiate " + base64.StdEncoding.EncodeToString(tok), nil
}

// loadOptions adds a negotiate scenario's authentication to opts: for
// negotiate-keepalive a token request on every new connection
// (Options.OnConnect), for negotiate-login a fresh token on every request
// (Variants), enough for span of load at krbLoginRate.
func (k *krbFixture) loadOptions(sc Scenario, opts *Options, span time.Duration) {
	base := opts.Request
	switch sc.Auth {
	case AuthNegotiateKeepalive:
		opts.OnConnect = func(c net.Conn) error {
			authz, err := k.token()
			if err != nil {
				return err
			}
			req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nX-AnchorMailbox: %s\r\nAuthorization: %s\r\nX-Mailboxd-Size: 100\r\n\r\n",
				base.Path, krbSPN[len("HTTP/"):], anchorMailbox, authz)
			if _, err := io.WriteString(c, req); err != nil {
				return err
			}
			// One response, read exactly: the connection's bytes after
			// it belong to the measured requests.
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64), nil)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("negotiate: status %d", resp.StatusCode)
			}
			return nil
		}
	case AuthNegotiateLogin:
		// Made anew for every run: a token sent to the gateway once is
		// a replay for the rest of the skew window.
		n := min(max(int(span.Seconds()*krbLoginRate), 5000), maxKrbTokens)
		v := &Variants{Requests: make([]Request, 0, n)}
		for range n {
			authz, err := k.token()
			if err != nil {
				break // the run shows the refusals
			}
			q := base
			q.Header = append(append([]Header(nil), base.Header...), Header{"Authorization", authz})
			v.Requests = append(v.Requests, q)
		}
		opts.Variants = v
	}
}
