package gateway_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/internal/gwtest"
	"frontdoor/internal/testbed"
	"frontdoor/mailboxd"
)

// Outlook's long-lived channels (docs/outlook.md): RPC over HTTP's
// RPC_IN_DATA/RPC_OUT_DATA and MAPI's NotificationWait, streamed on
// dedicated backend connections off the event loops.

// channelDirectory: alice and carol on DB01 (active mbx1, copy mbx2), bob
// on DB02 (mbx2) with alice as his delegate; every user has the password
// gwtest.Password.
func channelDirectory(m1, m2 *testbed.Mailboxd) string {
	return fmt.Sprintf(`
[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"
[[server]]
name = "mbx1"
address = %q
site = "site-a"
[[server]]
name = "mbx2"
address = %q
site = "site-a"
[[database]]
name = "DB01"
active = "mbx1"
copies = ["mbx2"]
[[database]]
name = "DB02"
active = "mbx2"
[[user]]
login = "alice"
address = "alice@example.test"
database = "DB01"
password_hash = %q
[[user]]
login = "carol"
address = "carol@example.test"
database = "DB01"
password_hash = %q
[[user]]
login = "bob"
address = "bob@example.test"
database = "DB02"
password_hash = %q
delegates = ["alice"]
`, m1.Addr(), m2.Addr(), gwtest.PasswordHash, gwtest.PasswordHash, gwtest.PasswordHash)
}

type channelBed struct {
	m1, m2  *testbed.Mailboxd
	g       *gwtest.Gateway
	dirText string
	tls     bool
}

// startChannelBed starts two mailbox servers and a gateway serving mapi
// and rpc with Basic authentication; extra is appended to its config.
func startChannelBed(t *testing.T, extra string, tlsListener bool) *channelBed {
	t.Helper()
	b := &channelBed{m1: testbed.StartMailboxd(t, "mbx1"), m2: testbed.StartMailboxd(t, "mbx2"), tls: tlsListener}
	b.dirText = channelDirectory(b.m1, b.m2)
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(t, "127.0.0.1"))
	var c strings.Builder
	fmt.Fprintf(&c, "directory = \"directory.toml\"\ngateway_id = \"gw-chan\"\n[engine]\nloops = 2\n")
	c.WriteString(extra + "\n")
	fmt.Fprintf(&c, "[[listener]]\nname = \"front\"\naddress = %q\n", addr)
	if tlsListener {
		dir := t.TempDir()
		fmt.Fprintf(&c, "tls = true\ntls_self_signed = true\ncertificates = [{ cert = %q, key = %q }]\n",
			dir+"/cert.pem", dir+"/key.pem")
	}
	c.WriteString(`
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
auth = ["basic"]
stream_methods = ["SYNCSTREAM"]
[[protocol]]
name = "mapi"
path_prefix = "/mapi"
backend_port = 1
auth = ["basic"]
[[protocol]]
name = "rpc"
path_prefix = "/rpc"
backend_port = 1
auth = ["basic"]
`)
	cfg, err := config.Parse("channel.toml", []byte(c.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, c.String())
	}
	dir, err := directory.Parse("directory.toml", []byte(b.dirText))
	if err != nil {
		t.Fatal(err)
	}
	b.g = gwtest.StartWith(t, cfg, dir, addr, nil)
	return b
}

type chanConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *channelBed) dial(t testing.TB) *chanConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.g.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b.tls {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = tc
	}
	t.Cleanup(func() { c.Close() })
	return &chanConn{Conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func authHeader(user string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+gwtest.Password)) + "\r\n"
}

// rpcHead is the head of an RPC channel request by user to mailbox.
func rpcHead(method, user, mailbox, pair string, length int64, extra string) string {
	return fmt.Sprintf("%s /rpc/rpcproxy.dll?%s:6001 HTTP/1.1\r\nHost: mail.example.test\r\n%sContent-Length: %d\r\n%s: %s\r\n%s\r\n",
		method, mailbox, authHeader(user), length, mailboxd.HeaderChannel, pair, extra)
}

func (c *chanConn) send(t testing.TB, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *chanConn) head(t testing.TB, method string) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: read response: %v", method, err)
	}
	return resp
}

// stream is a deterministic byte stream written in fixed 64 KiB blocks,
// so the test itself allocates nothing while it streams.
type stream struct {
	rng *rand.ChaCha8
	buf []byte
}

func newStream(seed byte) *stream {
	var s [32]byte
	s[0] = seed
	return &stream{rng: rand.NewChaCha8(s), buf: make([]byte, 64<<10)}
}

// writeN writes n bytes of the stream to w, hashing them into h.
func (s *stream) writeN(w io.Writer, n int64, h hash.Hash) error {
	for n > 0 {
		k := min(int64(len(s.buf)), n)
		_, _ = s.rng.Read(s.buf[:k])
		h.Write(s.buf[:k])
		if _, err := w.Write(s.buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// heapPeak samples the heap until stop is closed and returns the largest
// growth over base seen.
func heapPeak(stop <-chan struct{}) (peak chan uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak = make(chan uint64, 1)
	go func() {
		var max uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- max
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > base && ms.HeapAlloc-base > max {
					max = ms.HeapAlloc - base
				}
			}
		}
	}()
	return peak
}

// A 100 MiB RPC_IN_DATA stream arrives intact at mailboxd, its echo arrives
// intact on the paired RPC_OUT_DATA channel, and the gateway's heap does
// not grow with the stream.
func TestChannelRPCStream(t *testing.T) {
	b := startChannelBed(t, "", false)
	const n = 100 << 20
	out := b.dial(t)
	out.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "s1", 76, fmt.Sprintf("X-Mailboxd-Out-Length: %d\r\n", n))+strings.Repeat("o", 76))
	resp := out.head(t, "RPC_OUT_DATA")
	if resp.StatusCode != 200 || resp.ContentLength != n || resp.Header.Get("X-Mailboxd-Server") != "mbx1" || !resp.Close {
		t.Fatalf("OUT head: %d %v %v close=%v", resp.StatusCode, resp.ContentLength, resp.Header, resp.Close)
	}
	stop := make(chan struct{})
	peak := heapPeak(stop)

	in := b.dial(t)
	in.send(t, rpcHead("RPC_IN_DATA", "alice", "alice@example.test", "s1", n, ""))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_ = in.SetWriteDeadline(time.Now().Add(60 * time.Second))
		werr <- newStream(1).writeN(in, n, sent)
	}()
	got := sha256.New()
	_ = out.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64<<10)
	m, err := io.CopyBuffer(got, struct{ io.Reader }{resp.Body}, buf)
	if err != nil || m != n {
		t.Fatalf("OUT channel: %d of %d bytes, %v", m, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("IN channel write: %v", err)
	}
	r := in.head(t, "RPC_IN_DATA")
	body, _ := io.ReadAll(r.Body)
	close(stop)
	grew := <-peak

	want := hex.EncodeToString(sent.Sum(nil))
	if e := echoOf(t, body); r.StatusCode != 200 || e.BodyBytes != n || e.BodySHA256 != want || e.Method != "RPC_IN_DATA" {
		t.Errorf("IN answer %d: %d bytes, sha %s (want %s)", r.StatusCode, e.BodyBytes, e.BodySHA256, want)
	}
	if h := hex.EncodeToString(got.Sum(nil)); h != want {
		t.Errorf("OUT echo sha %s, want %s", h, want)
	}
	// Two channels of two 32 KiB buffers each, goroutine stacks, a few
	// heads: far below the 200 MiB that went through.
	if grew > 16<<20 {
		t.Errorf("heap grew by %d KiB while 2 x 100 MiB streamed", grew>>10)
	}
	t.Logf("heap growth peak: %d KiB", grew>>10)
	waitChannels(t, b, 0)
}

// A client that stops reading its OUT channel stops the IN channel's
// sender (TCP backpressure through the gateway and mailboxd) without the
// gateway buffering more than its bound; once it reads again every byte
// arrives.
func TestChannelBackpressure(t *testing.T) {
	b := startChannelBed(t, "[limits]\nchannel_buffer_bytes = 16384", false)
	const n = 96 << 20 // more than every socket buffer on the way
	out := b.dial(t)
	out.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "bp", 0, fmt.Sprintf("X-Mailboxd-Out-Length: %d\r\n", n)))
	resp := out.head(t, "RPC_OUT_DATA")
	if resp.StatusCode != 200 {
		t.Fatalf("OUT head: %d", resp.StatusCode)
	}
	stop := make(chan struct{})
	peak := heapPeak(stop)
	in := b.dial(t)
	in.send(t, rpcHead("RPC_IN_DATA", "alice", "alice@example.test", "bp", n, ""))
	var written atomic.Int64
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_ = in.SetWriteDeadline(time.Now().Add(120 * time.Second))
		werr <- newStream(2).writeN(countWriter{in, &written}, n, sent)
	}()
	// Nobody reads OUT: the writer stalls once the buffers on the way are
	// full. Wait until it made no progress for a while (bounded).
	var last int64 = -1
	for i := 0; i < 200; i++ {
		time.Sleep(50 * time.Millisecond)
		w := written.Load()
		if w == last {
			break
		}
		last = w
	}
	stalled := written.Load()
	close(stop)
	grew := <-peak
	if stalled >= n {
		t.Fatalf("the whole %d MiB was accepted although nobody read the echo", n>>20)
	}
	t.Logf("writer stalled after %d MiB (socket buffers); gateway heap growth peak %d KiB", stalled>>20, grew>>10)
	if grew > 8<<20 {
		t.Errorf("heap grew by %d KiB while the reader was stalled", grew>>10)
	}
	// Read everything now: byte-exact.
	got := sha256.New()
	_ = out.SetReadDeadline(time.Now().Add(120 * time.Second))
	m, err := io.CopyBuffer(got, struct{ io.Reader }{resp.Body}, make([]byte, 64<<10))
	if err != nil || m != n {
		t.Fatalf("OUT: %d of %d bytes, %v", m, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got.Sum(nil)) != hex.EncodeToString(sent.Sum(nil)) {
		t.Error("echo differs from what was sent")
	}
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// waitChannels waits (bounded) until the gateway has k open channels.
func waitChannels(t *testing.T, b *channelBed, k int64) {
	t.Helper()
	for i := 0; ; i++ {
		var open int64
		for _, be := range b.g.Snapshot().Backends {
			open += be.Channels
		}
		if open == k {
			return
		}
		if i == 500 {
			t.Fatalf("%d channels open, want %d", open, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// 200 concurrent NotificationWait long polls complete while ordinary
// requests to the same server keep being answered.
func TestChannelNotificationWaits(t *testing.T) {
	b := startChannelBed(t, "", false)
	const polls = 200
	var wg sync.WaitGroup
	var okPolls atomic.Int64
	var firstErr atomic.Value
	started := make(chan struct{}, polls)
	for i := 0; i < polls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", b.g.Addr, 5*time.Second)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "POST /mapi/emsmdb/?MailboxId=alice@example.test HTTP/1.1\r\nHost: h\r\n%sX-RequestType: NotificationWait\r\n"+
				"X-Mailboxd-Hold: 1500ms\r\nX-Mailboxd-Keepalive: 200ms\r\nContent-Length: 4\r\n\r\nwait", authHeader("alice"))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			started <- struct{}{}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !strings.HasSuffix(string(body), mailboxd.NotificationDone) ||
				!strings.HasPrefix(string(body), mailboxd.NotificationKeepalive) {
				firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q %v", resp.StatusCode, body, err))
				return
			}
			okPolls.Add(1)
		}()
	}
	// Ordinary requests on one keep-alive connection while the polls are
	// held: each must be answered (not queued behind the polls).
	for i := 0; i < polls; i++ {
		<-started
	}
	c := b.dial(t)
	ordinary := 0
	for i := 0; i < 50; i++ {
		c.send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+"\r\n")
		r := c.head(t, "GET")
		_, _ = io.Copy(io.Discard, r.Body)
		if r.StatusCode != 200 || r.Header.Get("X-Mailboxd-Server") != "mbx1" {
			t.Fatalf("ordinary request %d: %d", i, r.StatusCode)
		}
		ordinary++
	}
	if n := openChannels(b); n < polls/2 {
		t.Errorf("only %d polls were still held after %d ordinary requests", n, ordinary)
	}
	wg.Wait()
	if okPolls.Load() != polls {
		t.Fatalf("%d of %d polls completed (first failure: %v)", okPolls.Load(), polls, firstErr.Load())
	}
	waitChannels(t, b, 0)
}

func openChannels(b *channelBed) int64 {
	var open int64
	for _, be := range b.g.Snapshot().Backends {
		open += be.Channels
	}
	return open
}

// A channel on which nothing moves for its idle timeout is closed.
func TestChannelIdleTimeout(t *testing.T) {
	b := startChannelBed(t, "[timeouts]\nrpc_channel_idle = \"300ms\"", false)
	out := b.dial(t)
	// No pair: mailboxd holds the OUT channel open and sends nothing.
	out.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""))
	if r := out.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 {
		t.Fatalf("OUT head: %d", r.StatusCode)
	}
	_ = out.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := out.r.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle channel not closed: %v", err)
	}
	waitChannels(t, b, 0)
	if n := b.g.Snapshot().Rejects["channel_idle"]; n != 1 {
		t.Errorf("channel_idle = %d, want 1", n)
	}
}

// A delegate may open another user's mailbox by naming it (the RPC target,
// MAPI's MailboxId) and reaches that mailbox's server; anyone else gets
// 403, whether the mailbox exists or not.
func TestChannelDelegateRouting(t *testing.T) {
	b := startChannelBed(t, "", false)
	cases := []struct {
		name, user, head string
		method           string
		status           int
		server           string
	}{
		{"rpc own", "alice", rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""), "RPC_OUT_DATA", 200, "mbx1"},
		{"rpc delegate", "alice", rpcHead("RPC_OUT_DATA", "alice", "bob@example.test", "", 0, ""), "RPC_OUT_DATA", 200, "mbx2"},
		{"rpc server target", "alice", rpcHead("RPC_OUT_DATA", "alice", "mbx2", "", 0, ""), "RPC_OUT_DATA", 200, "mbx1"},
		{"rpc not delegate", "carol", rpcHead("RPC_OUT_DATA", "carol", "bob@example.test", "", 0, ""), "RPC_OUT_DATA", 403, ""},
		{"rpc unknown", "carol", rpcHead("RPC_OUT_DATA", "carol", "nobody@example.test", "", 0, ""), "RPC_OUT_DATA", 403, ""},
		{"rpc in delegate", "alice", rpcHead("RPC_IN_DATA", "alice", "bob%40example.test", "", 0, ""), "RPC_IN_DATA", 200, "mbx2"},
		{"mapi delegate", "alice", "POST /mapi/emsmdb/?MailboxId=bob@example.test HTTP/1.1\r\nHost: h\r\n" + authHeader("alice") +
			"X-RequestType: Execute\r\nContent-Length: 0\r\n\r\n", "POST", 200, "mbx2"},
		{"mapi wait delegate", "alice", "POST /mapi/emsmdb/?mailboxid=bob@example.test HTTP/1.1\r\nHost: h\r\n" + authHeader("alice") +
			"X-RequestType: NotificationWait\r\nX-Mailboxd-Hold: 10ms\r\nContent-Length: 0\r\n\r\n", "POST", 200, "mbx2"},
		{"mapi not delegate", "carol", "POST /mapi/emsmdb/?MailboxId=bob@example.test HTTP/1.1\r\nHost: h\r\n" + authHeader("carol") +
			"X-RequestType: NotificationWait\r\nContent-Length: 0\r\n\r\n", "POST", 403, ""},
	}
	for _, tc := range cases {
		c := b.dial(t)
		c.send(t, tc.head)
		r := c.head(t, tc.method)
		if r.StatusCode != tc.status || tc.server != "" && r.Header.Get("X-Mailboxd-Server") != tc.server {
			t.Errorf("%s: %d from %q, want %d from %q", tc.name, r.StatusCode, r.Header.Get("X-Mailboxd-Server"), tc.status, tc.server)
		}
		c.Close()
	}
	waitChannels(t, b, 0)
}

// When a database moves, the channels to its old server are closed (the
// client reconnects and reaches the new one); others stay.
func TestChannelFailoverCloses(t *testing.T) {
	b := startChannelBed(t, "", false)
	alice := b.dial(t)
	alice.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""))
	if r := alice.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 || r.Header.Get("X-Mailboxd-Server") != "mbx1" {
		t.Fatalf("alice: %d %v", r.StatusCode, r.Header)
	}
	bob := b.dial(t)
	bob.send(t, rpcHead("RPC_OUT_DATA", "bob", "bob@example.test", "", 0, ""))
	if r := bob.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 || r.Header.Get("X-Mailboxd-Server") != "mbx2" {
		t.Fatalf("bob: %d", r.StatusCode)
	}
	waitChannels(t, b, 2)
	moved := strings.Replace(b.dirText, "active = \"mbx1\"\ncopies = [\"mbx2\"]", "active = \"mbx2\"\ncopies = [\"mbx1\"]", 1)
	b.g.SetDirectory(mustDirectory(t, moved))
	_ = alice.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := alice.r.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("alice's channel to the old server still open: %v", err)
	}
	waitChannels(t, b, 1) // bob's stays
	again := b.dial(t)
	again.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""))
	if r := again.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 || r.Header.Get("X-Mailboxd-Server") != "mbx2" {
		t.Fatalf("alice after failover: %d from %q", r.StatusCode, r.Header.Get("X-Mailboxd-Server"))
	}
}

// Beyond max_channels_per_server a channel gets 503 with Retry-After, and
// ordinary requests are unaffected.
func TestChannelLimit(t *testing.T) {
	b := startChannelBed(t, "[backend]\nmax_channels_per_server = 1", false)
	first := b.dial(t)
	first.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""))
	if r := first.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 {
		t.Fatalf("first: %d", r.StatusCode)
	}
	second := b.dial(t)
	second.send(t, rpcHead("RPC_IN_DATA", "alice", "alice@example.test", "", 1<<30, ""))
	if r := second.head(t, "RPC_IN_DATA"); r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	c := b.dial(t)
	c.send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+"\r\n")
	if r := c.head(t, "GET"); r.StatusCode != 200 {
		t.Fatalf("ordinary: %d", r.StatusCode)
	}
	if n := b.g.Snapshot().Rejects["channel_limit"]; n != 1 {
		t.Errorf("channel_limit = %d", n)
	}
	// Ordinary requests with a large declared body are still bounded by
	// max_body_bytes: only channels stream.
	c = b.dial(t)
	c.send(t, "POST /owa/ HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+"Content-Length: 1073741824\r\n\r\n")
	if r := c.head(t, "POST"); r.StatusCode != 413 {
		t.Fatalf("ordinary 1 GiB POST: %d", r.StatusCode)
	}
}

// Over TLS the channel moves off the loop with its TLS state: the echo
// arrives byte-exact, and the channel's first request was authenticated
// off the loop (a cache miss) before it moved.
func TestChannelTLS(t *testing.T) {
	b := startChannelBed(t, "", true)
	const n = 8<<20 + 123
	out := b.dial(t)
	out.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "t1", 0, fmt.Sprintf("X-Mailboxd-Out-Length: %d\r\n", n)))
	resp := out.head(t, "RPC_OUT_DATA")
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" && false {
		t.Fatalf("OUT head: %d", resp.StatusCode)
	}
	in := b.dial(t)
	// Pipelined body bytes right behind the head, in the same write.
	var first strings.Builder
	first.WriteString(rpcHead("RPC_IN_DATA", "alice", "alice@example.test", "t1", n, ""))
	in.send(t, first.String())
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() { werr <- newStream(3).writeN(in, n, sent) }()
	got := sha256.New()
	_ = out.SetReadDeadline(time.Now().Add(30 * time.Second))
	if m, err := io.Copy(got, resp.Body); err != nil || m != n {
		t.Fatalf("OUT: %d of %d, %v", m, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	r := in.head(t, "RPC_IN_DATA")
	body, _ := io.ReadAll(r.Body)
	if e := echoOf(t, body); e.BodyBytes != n || e.BodySHA256 != hex.EncodeToString(sent.Sum(nil)) {
		t.Errorf("IN answer: %+v", e)
	}
	if hex.EncodeToString(got.Sum(nil)) != hex.EncodeToString(sent.Sum(nil)) {
		t.Error("echo differs")
	}
}

// A method a protocol lists in stream_methods is streamed like an RPC
// channel: its body may exceed max_body_bytes, a chunked body is re-encoded
// on the way, Expect: 100-continue is answered by the gateway, and it may
// follow an ordinary request on a keep-alive connection.
func TestChannelStreamMethodChunked(t *testing.T) {
	b := startChannelBed(t, "[limits]\nmax_body_bytes = 65536", false)
	c := b.dial(t)
	c.send(t, "GET /owa/ HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+"\r\n")
	if r := c.head(t, "GET"); r.StatusCode != 200 {
		t.Fatalf("ordinary: %d", r.StatusCode)
	} else {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	// An RPC_IN_DATA with a chunked body of 1 MiB (over max_body_bytes) in
	// uneven chunks, with extensions the gateway drops.
	c.send(t, "RPC_IN_DATA /rpc/rpcproxy.dll?alice@example.test:6001 HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+
		"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
	if r := c.head(t, "RPC_IN_DATA"); r.StatusCode != 100 {
		t.Fatalf("want 100 Continue from the gateway, got %d", r.StatusCode)
	}
	sent := sha256.New()
	s := newStream(4)
	total := 0
	for i := 0; total < 1<<20; i++ {
		n := 1 + (i*7919)%60000
		_, _ = s.rng.Read(s.buf[:n])
		sent.Write(s.buf[:n])
		c.send(t, fmt.Sprintf("%x;ext=%d\r\n", n, i))
		if _, err := c.Write(s.buf[:n]); err != nil {
			t.Fatal(err)
		}
		c.send(t, "\r\n")
		total += n
	}
	c.send(t, "0\r\nTrailer-Field: x\r\n\r\n")
	r := c.head(t, "RPC_IN_DATA")
	body, _ := io.ReadAll(r.Body)
	e := echoOf(t, body)
	if r.StatusCode != 200 || e.BodyBytes != int64(total) || e.BodySHA256 != hex.EncodeToString(sent.Sum(nil)) || !r.Close {
		t.Fatalf("%d: %d bytes (want %d), sha ok %v, close %v", r.StatusCode, e.BodyBytes, total,
			e.BodySHA256 == hex.EncodeToString(sent.Sum(nil)), r.Close)
	}
	for _, h := range e.Headers {
		if strings.EqualFold(h[0], "Expect") || strings.EqualFold(h[0], "Trailer-Field") || strings.EqualFold(h[0], "Authorization") {
			t.Errorf("forwarded %s", h[0])
		}
	}

	// The protocol's own stream method, with a declared body over
	// max_body_bytes.
	c = b.dial(t)
	const n = 1 << 20
	c.send(t, fmt.Sprintf("SYNCSTREAM /owa/sync HTTP/1.1\r\nHost: h\r\n%sContent-Length: %d\r\n\r\n", authHeader("alice"), n))
	sent = sha256.New()
	if err := newStream(5).writeN(c, n, sent); err != nil {
		t.Fatal(err)
	}
	r = c.head(t, "SYNCSTREAM")
	body, _ = io.ReadAll(r.Body)
	if e := echoOf(t, body); r.StatusCode != 200 || e.Method != "SYNCSTREAM" || e.BodyBytes != n || e.BodySHA256 != hex.EncodeToString(sent.Sum(nil)) {
		t.Fatalf("SYNCSTREAM: %d %+v", r.StatusCode, e)
	}
	if got := b.g.Snapshot().Rejects["body_too_large"]; got != 0 {
		t.Errorf("body_too_large = %d", got)
	}
}

// A channel to a mailbox server with tls = true dials its own TLS
// connection, verified like the pool's.
func TestChannelUpstreamTLS(t *testing.T) {
	tmp := t.TempDir()
	ca := newTestCA(t, tmp, "backend-ca")
	m := startTLSMailboxd(t, "mbx-tls", ca.leaf(t, "mbx-tls.example.test"))
	plain := testbed.StartMailboxd(t, "mbx-plain")
	g := upstreamGateway(t, m, "", fmt.Sprintf("tls_ca = %q", ca.pem), plain)
	dial := func() *chanConn {
		c, err := net.DialTimeout("tcp", g.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &chanConn{Conn: c, r: bufio.NewReader(c)}
	}
	const n = 4<<20 + 5
	head := func(method string, length int64, extra string) string {
		return fmt.Sprintf("%s /owa/rpc HTTP/1.1\r\nHost: h\r\nX-AnchorMailbox: alice@example.test\r\nX-Mailboxd-Channel: u1\r\nContent-Length: %d\r\n%s\r\n",
			method, length, extra)
	}
	out := dial()
	out.send(t, head("RPC_OUT_DATA", 0, fmt.Sprintf("X-Mailboxd-Out-Length: %d\r\n", n)))
	resp := out.head(t, "RPC_OUT_DATA")
	if resp.StatusCode != 200 || resp.Header.Get("X-Mailboxd-Server") != m.name {
		t.Fatalf("OUT: %d from %q", resp.StatusCode, resp.Header.Get("X-Mailboxd-Server"))
	}
	in := dial()
	in.send(t, head("RPC_IN_DATA", n, ""))
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() { werr <- newStream(6).writeN(in, n, sent) }()
	got := sha256.New()
	_ = out.SetReadDeadline(time.Now().Add(30 * time.Second))
	if k, err := io.Copy(got, resp.Body); err != nil || k != n {
		t.Fatalf("OUT: %d of %d, %v", k, n, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	r := in.head(t, "RPC_IN_DATA")
	body, _ := io.ReadAll(r.Body)
	if e := echoOf(t, body); e.BodyBytes != n || e.BodySHA256 != hex.EncodeToString(sent.Sum(nil)) ||
		hex.EncodeToString(got.Sum(nil)) != e.BodySHA256 {
		t.Fatalf("IN answer %+v", e)
	}
	if b := backendOf(t, g, m.name); b.DialFailures != 0 {
		t.Errorf("TLS backend counters %+v", b)
	}
}

// A channel has an access log record when it ends, like any exchange.
func TestChannelAccessLog(t *testing.T) {
	path := t.TempDir() + "/access.log"
	b := startChannelBed(t, fmt.Sprintf("[access_log]\npath = %q\nquery = true", path), false)
	c := b.dial(t)
	c.send(t, "POST /mapi/emsmdb/?MailboxId=bob@example.test HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+
		"X-RequestType: NotificationWait\r\nX-Mailboxd-Hold: 50ms\r\nX-Mailboxd-Keepalive: 10ms\r\nContent-Length: 4\r\n\r\nwait")
	r := c.head(t, "POST")
	body, _ := io.ReadAll(r.Body)
	for i := 0; b.g.Snapshot().AccessLog["records"] < 1; i++ {
		if i == 500 {
			t.Fatal("no access record")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.g.Stop(t) // flushes
	lines := readAccessLog(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines: %+v", len(lines), lines)
	}
	e := lines[0]
	if e.Method != "POST" || e.Path != "/mapi/emsmdb/" || e.Query == nil || *e.Query != "MailboxId=bob@example.test" ||
		e.User != "alice" || e.Server != "mbx2" || e.Status != 200 || e.Protocol != "mapi" || e.Error != "" ||
		e.ResponseBytes <= int64(len(body)) || e.RequestBytes < 4 || e.BackendMS == nil {
		t.Errorf("record %+v (query %v)", e, e.Query)
	}
}

// Taking a protocol out of service (component state inactive, after the
// drain grace) closes its channels, which have no next request to end
// keep-alive on; the other protocols' channels stay.
func TestChannelComponentDrain(t *testing.T) {
	b := startChannelBed(t, "[state]\ndrain_grace = \"0s\"", false)
	rpc := b.dial(t)
	rpc.send(t, rpcHead("RPC_OUT_DATA", "alice", "alice@example.test", "", 0, ""))
	if r := rpc.head(t, "RPC_OUT_DATA"); r.StatusCode != 200 {
		t.Fatalf("rpc: %d", r.StatusCode)
	}
	mapi := b.dial(t)
	mapi.send(t, "POST /mapi/emsmdb/ HTTP/1.1\r\nHost: h\r\n"+authHeader("alice")+
		"X-RequestType: NotificationWait\r\nX-Mailboxd-Hold: 30s\r\nContent-Length: 0\r\n\r\n")
	if r := mapi.head(t, "POST"); r.StatusCode != 200 {
		t.Fatalf("mapi: %d", r.StatusCode)
	}
	waitChannels(t, b, 2)
	if _, err := b.g.SetComponentState("rpc", "inactive", "test"); err != nil {
		t.Fatal(err)
	}
	_ = rpc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := rpc.r.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("rpc channel still open after its protocol was taken out: %v", err)
	}
	waitChannels(t, b, 1)
	if n := b.g.Snapshot().Rejects["channel_closed"]; n != 1 {
		t.Errorf("channel_closed = %d", n)
	}
}
