package kerberos

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"frontdoor/internal/krb5kdc"
)

const (
	testRealm = "FRONTDOOR.TEST"
	testSPN   = "HTTP/mail.frontdoor.test"
	otherSPN  = "HTTP/other.frontdoor.test"
)

// realm is one KDC shared by the tests of this package: creating a realm
// costs about a second.
var realm struct {
	once   sync.Once
	kdc    *krb5kdc.KDC
	dir    string
	err    error
	keytab string // testSPN's first key
}

func startRealm(t testing.TB) *krb5kdc.KDC {
	t.Helper()
	if err := krb5kdc.Installed(); err != nil {
		t.Skip(err)
	}
	realm.once.Do(func() {
		realm.dir, realm.err = os.MkdirTemp("", "frontdoor-krb5-")
		if realm.err != nil {
			return
		}
		realm.kdc, realm.err = krb5kdc.Start(realm.dir, testRealm)
		if realm.err != nil {
			return
		}
		k := realm.kdc
		realm.keytab = filepath.Join(realm.dir, "http.keytab")
		for _, f := range []func() error{
			func() error { return k.AddService(testSPN) },
			func() error { return k.AddService(otherSPN) },
			func() error { return k.AddUser("alice", "alice-pw") },
			func() error { return k.AddUser("bob", "bob-pw") },
			func() error { return k.ExportKeytab(realm.keytab, testSPN) },
		} {
			if realm.err = f(); realm.err != nil {
				return
			}
		}
	})
	if realm.err != nil {
		t.Fatal(realm.err)
	}
	return realm.kdc
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realm.kdc != nil {
		realm.kdc.Stop()
	}
	if realm.dir != "" {
		os.RemoveAll(realm.dir)
	}
	os.Exit(code)
}

func newAcceptor(t *testing.T, path string, realms ...string) *Acceptor {
	t.Helper()
	kt, err := LoadKeytab(path)
	if err != nil {
		t.Fatal(err)
	}
	return NewAcceptor(Config{Keytab: kt, Replay: NewReplayCache(1024), Realms: realms})
}

func login(t *testing.T, k *krb5kdc.KDC, name, pw string) *krb5kdc.Client {
	t.Helper()
	c, err := k.Login(name, pw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Destroy)
	return c
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a refusal for %s", err, want)
	}
	if e.Reason != want {
		t.Fatalf("reason %s (%v), want %s", e.Reason, err, want)
	}
}

func TestAcceptMutual(t *testing.T) {
	k := startRealm(t)
	a := newAcceptor(t, realm.keytab)
	c := login(t, k, "alice", "alice-pw")
	tok, verify, err := c.MutualToken(testSPN)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Accept(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Client != "alice@"+testRealm || res.Name != "alice" || res.Realm != testRealm || res.Service != testSPN+"@"+testRealm {
		t.Fatalf("result %+v", res)
	}
	if time.Until(res.EndTime) < time.Hour {
		t.Fatalf("end time %v", res.EndTime)
	}
	if err := verify(res.Response); err != nil {
		t.Fatalf("mutual authentication: %v", err)
	}

	// The same token again is a replay (RFC 4120 3.2.3)...
	_, err = a.Accept(tok, time.Now())
	wantReason(t, err, ReasonReplay)
	// ...but a new authenticator with the same ticket is not.
	tok2, _, err := c.MutualToken(testSPN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(tok2, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestAcceptWithoutMutual(t *testing.T) {
	k := startRealm(t)
	a := newAcceptor(t, realm.keytab)
	tok, err := login(t, k, "bob", "bob-pw").Token(testSPN)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Accept(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Still a completed negotiation, without an AP-REP inside.
	if len(res.Response) == 0 || res.Client != "bob@"+testRealm {
		t.Fatalf("result %+v", res)
	}
}

func TestAcceptRawKerberos(t *testing.T) {
	k := startRealm(t)
	a := newAcceptor(t, realm.keytab)
	tok, err := login(t, k, "alice", "alice-pw").RawToken(testSPN)
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Accept(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// No SPNEGO to complete and no mutual authentication asked: no answer.
	if res.Client != "alice@"+testRealm || res.Response != nil {
		t.Fatalf("result %+v", res)
	}
}

func TestRefusals(t *testing.T) {
	k := startRealm(t)
	a := newAcceptor(t, realm.keytab)
	c := login(t, k, "alice", "alice-pw")
	fresh := func(spn string) []byte {
		tok, err := c.Token(spn)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("wrong service", func(t *testing.T) {
		_, err := a.Accept(fresh(otherSPN), time.Now())
		wantReason(t, err, ReasonWrongService)
	})
	t.Run("expired", func(t *testing.T) {
		// The realm's tickets live 10 hours.
		_, err := a.Accept(fresh(testSPN), time.Now().Add(11*time.Hour))
		wantReason(t, err, ReasonExpired)
	})
	t.Run("skew", func(t *testing.T) {
		_, err := a.Accept(fresh(testSPN), time.Now().Add(6*time.Minute))
		wantReason(t, err, ReasonSkew)
	})
	t.Run("realm", func(t *testing.T) {
		b := newAcceptor(t, realm.keytab, "OTHER.TEST")
		_, err := b.Accept(fresh(testSPN), time.Now())
		wantReason(t, err, ReasonUnknownPrincipal)
	})
	t.Run("ntlm", func(t *testing.T) {
		_, err := a.Accept([]byte("NTLMSSP\x00\x01\x00\x00\x00\x07\x82\x08\xa2"), time.Now())
		wantReason(t, err, ReasonNTLM)
	})
	t.Run("garbage", func(t *testing.T) {
		_, err := a.Accept([]byte("\x60\x03\x06\x01\x00"), time.Now())
		wantReason(t, err, ReasonBadToken)
		_, err = a.Accept(nil, time.Now())
		wantReason(t, err, ReasonBadToken)
	})
	t.Run("too large", func(t *testing.T) {
		_, err := a.Accept(make([]byte, DefaultMaxTokenBytes+1), time.Now())
		wantReason(t, err, ReasonTooLarge)
	})
	t.Run("tampered", func(t *testing.T) {
		tok := fresh(testSPN)
		tok[len(tok)-5] ^= 0xff // inside the encrypted authenticator
		_, err := a.Accept(tok, time.Now())
		wantReason(t, err, ReasonBadToken)
	})
}

// TestRotation rolls the service key: while the keytab holds the old and
// the new kvno, tickets of both are accepted; a keytab without the new
// kvno refuses new tickets as no_key.
func TestRotation(t *testing.T) {
	k := startRealm(t)
	dir := t.TempDir()
	spn := "HTTP/rotate.frontdoor.test"
	if err := k.AddService(spn); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shared.keytab")
	if err := k.ExportKeytab(path, spn); err != nil {
		t.Fatal(err)
	}
	kt, err := LoadKeytab(path)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(Config{Keytab: kt, Replay: NewReplayCache(64)})
	old := login(t, k, "alice", "alice-pw")
	oldTok, err := old.Token(spn) // a kvno 1 ticket, cached by this client
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Rekey(spn); err != nil {
		t.Fatal(err)
	}
	newc := login(t, k, "bob", "bob-pw")
	newTok, err := newc.Token(spn) // kvno 2
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Accept(newTok, time.Now())
	wantReason(t, err, ReasonNoKey)

	// Distribute the new keytab (both kvnos) by rename, as an operator
	// copying it onto every member does.
	tmp := filepath.Join(dir, "new.keytab")
	if err := k.ExportKeytab(tmp, spn); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if changed, err := kt.Reload(); err != nil || !changed {
		t.Fatalf("reload: changed %v, %v", changed, err)
	}
	t.Log(kt.Summary())
	r1, err := a.Accept(oldTok, time.Now())
	if err != nil {
		t.Fatalf("old kvno: %v", err)
	}
	newTok2, err := newc.Token(spn)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.Accept(newTok2, time.Now())
	if err != nil {
		t.Fatalf("new kvno: %v", err)
	}
	if r1.KVNO == r2.KVNO {
		t.Fatalf("both tickets have kvno %d", r1.KVNO)
	}

	// A broken file is refused; the keys in service stay.
	if err := os.WriteFile(path, []byte("not a keytab"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kt.Reload(); err == nil {
		t.Fatal("a broken keytab was accepted")
	}
	tok3, _ := old.Token(spn)
	if _, err := a.Accept(tok3, time.Now()); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
}

// BenchmarkAccept is the CPU of one Negotiate verification: SPNEGO and
// AP-REQ parsing, ticket and authenticator decryption (AES256), the
// checks, the replay cache and the mutual-authentication AP-REP.
func BenchmarkAccept(b *testing.B) {
	if err := krb5kdc.Installed(); err != nil {
		b.Skip(err)
	}
	k := startRealm(b)
	kt, err := LoadKeytab(realm.keytab)
	if err != nil {
		b.Fatal(err)
	}
	a := NewAcceptor(Config{Keytab: kt, Replay: NewReplayCache(1 << 20)})
	c, err := k.Login("alice", "alice-pw")
	if err != nil {
		b.Fatal(err)
	}
	defer c.Destroy()
	toks := make([][]byte, b.N)
	for i := range toks {
		if toks[i], _, err = c.MutualToken(testSPN); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := a.Accept(toks[i], time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
