package auth

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestParseBasic(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		value      string
		user, pass string // both empty: want !ok
	}{
		// RFC 7617 section 2's example, and section 2.1's UTF-8 one.
		{"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame"},
		{"Basic dGVzdDoxMjPCow==", "test", "123\u00a3"},
		{"bAsIc   " + b64("alice:pw"), "alice", "pw"},
		{" \tBasic " + b64("alice:pw") + " \t", "alice", "pw"},
		{"Basic " + b64(`CORP\alice:p:w`), `CORP\alice`, "p:w"}, // first ':' ends the user-id
		{"Basic " + b64("alice@example.test:"+strings.Repeat("x", 1000)), "alice@example.test", strings.Repeat("x", 1000)},

		{"Basic", "", ""},
		{"Basic ", "", ""},
		{"Basic" + b64("alice:pw"), "", ""},                                  // no space
		{"Basic\t" + b64("alice:pw"), "", ""},                                // 1*SP, not HTAB
		{"Bearer " + b64("alice:pw"), "", ""},                                // scheme
		{"Basics " + b64("alice:pw"), "", ""},                                // scheme
		{"Basic " + b64("alicepw"), "", ""},                                  // no colon
		{"Basic " + b64(":pw"), "", ""},                                      // empty user-id
		{"Basic " + b64("alice:"), "", ""},                                   // empty password
		{"Basic " + b64("al\x00ice:pw"), "", ""},                             // NUL
		{"Basic " + b64("alice:p\nw"), "", ""},                               // LF
		{"Basic " + b64("alice:pw\x7f"), "", ""},                             // DEL
		{"Basic YWxpY2U6cHc", "", ""},                                        // padding missing
		{"Basic YWxpY2U6cHd=", "", ""},                                       // non-zero padding bits ("alice:pw" is ...cHc=)
		{"Basic YWxpY2U6\r\ncHc=", "", ""},                                   // the decoder would skip CR LF
		{"Basic YWxpY2U6cHc= ", "alice", "pw"},                               // trailing OWS is the field's
		{"Basic YWxp Y2U6cHc=", "", ""},                                      // space inside
		{"Basic YWxpY2U6cHc=,foo=bar", "", ""},                               // auth-params
		{"Basic " + b64("a:"+strings.Repeat("x", BasicScratchSize)), "", ""}, // oversize
		{"Basic " + b64("alice:pw") + "==", "", ""},
		{"Basic -_-_", "", ""}, // base64url alphabet
	} {
		scratch := make([]byte, BasicScratchSize)
		user, pass, ok := ParseBasic([]byte(tc.value), scratch)
		want := tc.user != ""
		if ok != want || string(user) != tc.user || string(pass) != tc.pass {
			t.Errorf("ParseBasic(%.60q) = %q, %q, %v; want %q, %q, %v", tc.value, user, pass, ok, tc.user, tc.pass, want)
		}
	}
}

// The scratch buffer, not a constant, bounds what ParseBasic decodes.
func TestParseBasicScratchBound(t *testing.T) {
	v := []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:secret"))) // 12 bytes
	if _, _, ok := ParseBasic(v, make([]byte, 12)); !ok {
		t.Error("12-byte credentials refused with a 12-byte scratch")
	}
	if _, _, ok := ParseBasic(v, make([]byte, 11)); ok {
		t.Error("12-byte credentials accepted with an 11-byte scratch")
	}
	if _, _, ok := ParseBasic(v, nil); ok {
		t.Error("accepted with no scratch")
	}
}

func TestParseBearer(t *testing.T) {
	for _, tc := range []struct {
		value, token string // token empty: want !ok
	}{
		// RFC 6750 section 2.1's example.
		{"Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"},
		{"bearer   abc~+/==", "abc~+/=="},
		{"BEARER a.b.c ", "a.b.c"},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"Bearer ==", ""},     // padding only
		{"Bearer a=b", ""},    // '=' only at the end
		{"Bearer a b", ""},    // one token
		{"Bearer a,b", ""},    // not a b64token character
		{"Bearer a\x00", ""},  // control
		{"Bearer \"a\"", ""},  // quoted
		{"Basic abc", ""},     // scheme
		{"Bearerabc", ""},     // no space
		{"Bearer\tabc", ""},   // 1*SP
		{"Bearer é", ""},      // non-ASCII
		{"Bearer a\r\nb", ""}, // CR LF
	} {
		tok, ok := ParseBearer([]byte(tc.value))
		if ok != (tc.token != "") || string(tok) != tc.token {
			t.Errorf("ParseBearer(%q) = %q, %v; want %q", tc.value, tok, ok, tc.token)
		}
	}
}

func TestScheme(t *testing.T) {
	for _, tc := range []struct{ value, scheme, rest string }{
		{"Negotiate YIIabc", "Negotiate", "YIIabc"},
		{"  NTLM   TlRMTVNTUAAB  ", "NTLM", "TlRMTVNTUAAB"},
		{"Basic", "Basic", ""},
		{"", "", ""},
		{"Digest realm=\"x\", nonce=\"y\"", "Digest", "realm=\"x\", nonce=\"y\""},
	} {
		s, r := Scheme([]byte(tc.value))
		if string(s) != tc.scheme || string(r) != tc.rest {
			t.Errorf("Scheme(%q) = %q, %q; want %q, %q", tc.value, s, r, tc.scheme, tc.rest)
		}
	}
}

// FuzzParseBasic checks ParseBasic's promises on arbitrary input, and
// checks it against net/http's independent (and laxer) parser: whatever
// ParseBasic accepts, net/http must read the same way.
func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{
		"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Basic dGVzdDoxMjPCow==", "basic  YTpi",
		"Basic YWxpY2U6cHc", "Basic OnB3", "Basic YTo=", "Basic YQBiOmM=", "Basic YWxpY2U6\r\ncHc=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		scratch := make([]byte, 64)
		user, pass, ok := ParseBasic(value, scratch)
		if !ok {
			if user != nil || pass != nil {
				t.Fatal("refused but returned credentials")
			}
			return
		}
		if len(user) == 0 || len(pass) == 0 || bytes.IndexByte(user, ':') >= 0 {
			t.Fatalf("accepted user %q pass %q", user, pass)
		}
		for _, c := range append(append([]byte(nil), user...), pass...) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("accepted a control character: %q:%q", user, pass)
			}
		}
		scheme, cred := Scheme(value)
		if !strings.EqualFold(string(scheme), "basic") {
			t.Fatalf("accepted scheme %q", scheme)
		}
		// Canonical: the credentials re-encode to exactly what was sent.
		if got := base64.StdEncoding.EncodeToString([]byte(string(user) + ":" + string(pass))); got != string(cred) {
			t.Fatalf("accepted %q, which re-encodes as %q", cred, got)
		}
		r := http.Request{Header: http.Header{"Authorization": {"Basic " + string(cred)}}}
		hu, hp, hok := r.BasicAuth()
		if !hok || hu != string(user) || hp != string(pass) {
			t.Fatalf("ParseBasic read %q:%q, net/http %q:%q (%v)", user, pass, hu, hp, hok)
		}
	})
}

// FuzzParseBearer checks that an accepted token is all b64token and is
// what follows the scheme.
func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer mF_9.B5f-4.1JqM", "bearer a==", "Bearer =", "Bearer a b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		tok, ok := ParseBearer(value)
		if !ok {
			return
		}
		body := bytes.TrimRight(tok, "=")
		if len(body) == 0 {
			t.Fatalf("accepted %q", tok)
		}
		for _, c := range body {
			if !isB64token(c) {
				t.Fatalf("accepted %q", tok)
			}
		}
		if _, rest := Scheme(value); !bytes.Equal(rest, tok) {
			t.Fatalf("token %q is not the credentials %q", tok, rest)
		}
	})
}

func BenchmarkParseBasic(b *testing.B) {
	v := []byte("Basic " + base64.StdEncoding.EncodeToString([]byte("alice@example.test:correct horse battery staple")))
	scratch := make([]byte, BasicScratchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := ParseBasic(v, scratch); !ok {
			b.Fatal("refused")
		}
	}
}
