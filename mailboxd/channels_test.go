package mailboxd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An RPC_IN_DATA channel's bytes arrive on the paired RPC_OUT_DATA channel,
// byte for byte, and the IN channel's answer says what arrived.
func TestRPCChannelEcho(t *testing.T) {
	s := start(t, Options{Name: "mbx-rpc"})
	const n = 3<<20 + 17
	data := make([]byte, n)
	_, _ = rand.Read(data)

	out := dial(t, s.addr)
	out.send(t, fmt.Sprintf("RPC_OUT_DATA /rpc/rpcproxy.dll?mbx:6001 HTTP/1.1\r\nHost: h\r\nContent-Length: 76\r\n"+
		"X-Mailboxd-Channel: p1\r\nX-Mailboxd-Out-Length: %d\r\n\r\n%s", n, strings.Repeat("o", 76)))
	resp, err := http.ReadResponse(out.br, &http.Request{Method: "RPC_OUT_DATA"})
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != n {
		t.Fatalf("OUT head: %v %+v", err, resp)
	}
	in := dial(t, s.addr)
	in.send(t, fmt.Sprintf("RPC_IN_DATA /rpc/rpcproxy.dll?mbx:6001 HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"+
		"X-Mailboxd-Channel: p1\r\n\r\n", n))
	go func() { _, _ = in.Write(data) }()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("OUT body: %d bytes, equal %v, %v", len(got), bytes.Equal(got, data), err)
	}
	r, body := in.read(t, "RPC_IN_DATA")
	sum := sha256.Sum256(data)
	if e := decodeEcho(t, body); r.StatusCode != 200 || e.BodyBytes != n || e.BodySHA256 != hex.EncodeToString(sum[:]) || e.Method != "RPC_IN_DATA" {
		t.Errorf("IN answer %d: %+v", r.StatusCode, e)
	}
}

// A NotificationWait is held for the time asked, with keep-alive lines.
func TestNotificationWait(t *testing.T) {
	s := start(t, Options{Name: "mbx-mapi"})
	c := dial(t, s.addr)
	c.send(t, "POST /mapi/emsmdb/?MailboxId=a@b HTTP/1.1\r\nHost: h\r\nX-RequestType: NotificationWait\r\n"+
		"X-Mailboxd-Hold: 300ms\r\nX-Mailboxd-Keepalive: 50ms\r\nContent-Length: 4\r\n\r\nwait")
	start := time.Now()
	resp, body := c.read(t, "POST")
	if resp.StatusCode != 200 || resp.Header.Get("X-RequestType") != "NotificationWait" ||
		!strings.HasSuffix(string(body), NotificationDone) || !strings.HasPrefix(string(body), NotificationKeepalive) {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("answered before the hold time")
	}
	// Ordinary requests are unaffected on the same connection.
	c.send(t, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, b := c.read(t, "GET"); decodeEcho(t, b).Target != "/x" {
		t.Errorf("next request: %q", b)
	}
}
