package mailproxy

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// FuzzParseIMAPLine: the pre-login command parser sees anything an
// unauthenticated client sends. It must not panic, must keep no slice of
// the connection's buffer (the arguments outlive it), and reports a
// literal only when the line ends with one.
func FuzzParseIMAPLine(f *testing.F) {
	for _, s := range []string{
		`a LOGIN alice password`, `a LOGIN "al\"ice" "pa\\ss"`, `a LOGIN {5}`, `b ID ("name" "x" "v" {3+}`,
		`c AUTHENTICATE PLAIN =`, `"unterminated`, `{}`, `{+}`, `{99999999999}`, `a (((`, `a "" ""`, "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := &session{litNeed: -1}
		in := bytes.Clone(line)
		lit, nonSync, ok := s.parseIMAPLine(in)
		if !ok && (lit != -1 || nonSync) {
			t.Fatalf("refused line with literal %d nonSync %v", lit, nonSync)
		}
		if lit >= 0 && (len(line) == 0 || line[len(line)-1] != '}') {
			t.Fatalf("literal %d on a line not ending in '}': %q", lit, line)
		}
		if lit < -1 {
			t.Fatalf("literal %d", lit)
		}
		want := make([][]byte, len(s.args))
		for i, a := range s.args {
			want[i] = bytes.Clone(a)
		}
		for i := range in {
			in[i] ^= 0xff
		}
		for i, a := range s.args {
			if !bytes.Equal(a, want[i]) {
				t.Fatalf("argument %d aliases the input buffer", i)
			}
		}
	})
}

// FuzzDecodePlain: a PLAIN response yields a user and a password only when
// it has three parts and no authorization identity other than the user.
func FuzzDecodePlain(f *testing.F) {
	f.Add([]byte(base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pw"))))
	f.Add([]byte(base64.StdEncoding.EncodeToString([]byte("bob\x00alice\x00pw"))))
	f.Add([]byte("===="))
	f.Fuzz(func(t *testing.T, b64 []byte) {
		user, pass, ok := decodePlain(b64)
		if !ok {
			return
		}
		raw, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil {
			t.Fatalf("accepted bad base64 %q", b64)
		}
		parts := bytes.Split(raw, []byte{0})
		if len(parts) != 3 || !bytes.Equal(parts[1], user) || !bytes.Equal(parts[2], pass) || len(user) == 0 {
			t.Fatalf("%q decoded to %q %q", raw, user, pass)
		}
		if len(parts[0]) > 0 && !bytes.EqualFold(parts[0], user) {
			t.Fatalf("authorization identity %q accepted for %q", parts[0], user)
		}
	})
}
