package tlsterm

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
)

// FuzzRecordLayer feeds the record layer what a client could send after
// the handshake: records sealed under the right key with any inner type and
// content, and raw bytes. Nothing may panic; application data comes out as
// it went in; a KeyUpdate the layer accepted moves both sides to the next
// key; after an error the input ends.
func FuzzRecordLayer(f *testing.F) {
	f.Add([]byte{0, recordTypeApplicationData, 'h', 'i'})
	f.Add([]byte{0, recordTypeHandshake, handshakeTypeKeyUpdate, 0, 0, 1, 1, 0xff, 0, recordTypeApplicationData, 'x'})
	f.Add([]byte{0, recordTypeAlert, alertLevelWarning, alertUserCanceled})
	f.Add([]byte{1, recordTypeApplicationData, 3, 3, 0, 17})
	f.Add([]byte{0, 0, 0, 0})
	secret := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	f.Fuzz(func(t *testing.T, in []byte) {
		server, err := newRecords13(tls.TLS_AES_128_GCM_SHA256, secret(1), secret(2), 0)
		if err != nil {
			t.Fatal(err)
		}
		client, _ := newRecords13(tls.TLS_AES_128_GCM_SHA256, secret(2), secret(1), 0)
		// Chunks separated by 0xff: a mode byte, then a sealed record's
		// type and content (mode 0) or raw bytes (mode 1).
		for _, chunk := range bytes.Split(in, []byte{0xff}) {
			if len(chunk) < 2 {
				continue
			}
			var rec []byte
			if chunk[0]%2 == 0 {
				if len(chunk)-2 > maxRecordPlaintext {
					continue
				}
				rec, _ = client.appendRecord(nil, chunk[1], chunk[2:]...)
			} else {
				rec = append(rec, chunk[1:]...)
			}
			if len(rec) < recordHeaderLen {
				return
			}
			n, alert := checkHeader((*[recordHeaderLen]byte)(rec))
			if alert != 0 {
				return
			}
			if len(rec) < recordHeaderLen+n {
				return
			}
			body := rec[recordHeaderLen : recordHeaderLen+n]
			typ, content, alert := server.open(rec[:recordHeaderLen], body)
			if alert != 0 {
				if chunk[0]%2 == 0 && chunk[1] != 0 {
					t.Fatalf("a record sealed under the right key was refused: alert %d", alert)
				}
				return
			}
			got, err := server.handle(typ, content)
			if err != nil {
				var ae AlertError
				if !errors.As(err, &ae) {
					t.Fatalf("handle: %v, not an AlertError", err)
				}
				return
			}
			if sealed := chunk[0]%2 == 0; sealed && chunk[1] != 0 && (typ != chunk[1] || !bytes.Equal(content, chunk[2:])) {
				t.Fatalf("got type %d %q, sent %d %q", typ, content, chunk[1], chunk[2:])
			} else if sealed && chunk[1] == 0 {
				// A zero type byte is padding: the type is the last
				// non-zero byte of what was sent.
				if want := bytes.TrimRight(chunk[2:], "\x00"); !bytes.Equal(append(content, typ), want) {
					t.Fatalf("got type %d %q, sent %q and padding", typ, content, chunk[2:])
				}
			}
			if got == gotEOF {
				return
			}
			if typ == recordTypeHandshake {
				// Accepted: one KeyUpdate per message, the client follows.
				for range len(content) / 5 {
					if err := client.out.update(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	})
}
