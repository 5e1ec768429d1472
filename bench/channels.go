package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ChannelLoad is background load of Outlook's long-lived channels
// (docs/outlook.md) run while a scenario measures ordinary requests: MAPI
// NotificationWait long polls held by mailboxd with keep-alive bytes, and
// RPC over HTTP channel pairs whose IN channel trickles bytes that mailboxd
// echoes on the OUT channel. Everything goes to the scenario's path with
// its X-AnchorMailbox, so the channels reach the same server as the
// measured requests.
type ChannelLoad struct {
	Polls    int           // concurrent NotificationWait polls
	RPCPairs int           // RPC_IN_DATA/RPC_OUT_DATA pairs
	Hold     time.Duration // how long mailboxd holds a poll (default 20s)
	// Trickle is what each IN channel sends every TrickleEvery (default
	// 4 KiB every 100ms).
	Trickle      int
	TrickleEvery time.Duration
}

// ChannelStats is what the background load saw.
type ChannelStats struct {
	PollsHeld      int64  `json:"polls_held"` // polls whose first response head arrived
	PollsCompleted int64  `json:"polls_completed"`
	PollErrors     int64  `json:"poll_errors"`
	RPCPairsOpen   int64  `json:"rpc_pairs_open"`
	RPCBytesEchoed int64  `json:"rpc_bytes_echoed"`
	RPCErrors      int64  `json:"rpc_errors"`
	FirstError     string `json:"first_error,omitempty"`
}

// channelRun is a running ChannelLoad.
type channelRun struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	addr   string
	path   string
	anchor string
	cl     ChannelLoad

	polls, pollErrs, pairs, echoed, rpcErrs atomic.Int64
	held                                    atomic.Int64 // polls whose response head arrived
	firstErr                                atomic.Value

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// startChannels starts cl against addr and returns once every poll and
// pair is established (or failed, or settle passed).
func startChannels(ctx context.Context, addr, path, anchor string, cl ChannelLoad, settle time.Duration) *channelRun {
	if cl.Hold <= 0 {
		cl.Hold = 20 * time.Second
	}
	if cl.Trickle <= 0 {
		cl.Trickle = 4 << 10
	}
	if cl.TrickleEvery <= 0 {
		cl.TrickleEvery = 100 * time.Millisecond
	}
	r := &channelRun{addr: addr, path: path, anchor: anchor, cl: cl, conns: map[net.Conn]struct{}{}}
	r.ctx, r.cancel = context.WithCancel(ctx)
	for i := 0; i < cl.Polls; i++ {
		r.wg.Add(1)
		go r.poll()
	}
	for i := 0; i < cl.RPCPairs; i++ {
		r.wg.Add(1)
		go r.rpcPair(i)
	}
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) && r.ctx.Err() == nil {
		if r.held.Load()+r.pollErrs.Load() >= int64(cl.Polls) && r.pairs.Load()+r.rpcErrs.Load() >= int64(cl.RPCPairs) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// stop ends the load and reports it.
func (r *channelRun) stop() ChannelStats {
	r.cancel()
	r.mu.Lock()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	st := ChannelStats{PollsHeld: r.held.Load(), PollsCompleted: r.polls.Load(), PollErrors: r.pollErrs.Load(), RPCPairsOpen: r.pairs.Load(),
		RPCBytesEchoed: r.echoed.Load(), RPCErrors: r.rpcErrs.Load()}
	if e, ok := r.firstErr.Load().(string); ok {
		st.FirstError = e
	}
	return st
}

func (st ChannelStats) String() string {
	s := fmt.Sprintf("%d polls held, %d completed (%d errors), %d RPC pairs, %d bytes echoed (%d errors)",
		st.PollsHeld, st.PollsCompleted, st.PollErrors, st.RPCPairsOpen, st.RPCBytesEchoed, st.RPCErrors)
	if st.FirstError != "" {
		s += "; first error: " + st.FirstError
	}
	return s
}

func (r *channelRun) fail(n *atomic.Int64, err error) {
	if r.ctx.Err() != nil {
		return // stopping: connections are closed under the readers
	}
	n.Add(1)
	r.firstErr.CompareAndSwap(nil, err.Error())
}

func (r *channelRun) dial() (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(r.ctx, "tcp", r.addr)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.conns[c] = struct{}{}
	r.mu.Unlock()
	if r.ctx.Err() != nil {
		_ = c.Close()
		return nil, r.ctx.Err()
	}
	return c, nil
}

func (r *channelRun) forget(c net.Conn) {
	_ = c.Close()
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// poll keeps one NotificationWait held, one after another.
func (r *channelRun) poll() {
	defer r.wg.Done()
	first := true
	for r.ctx.Err() == nil {
		c, err := r.dial()
		if err != nil {
			r.fail(&r.pollErrs, err)
			return
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: bench\r\nX-AnchorMailbox: %s\r\nX-RequestType: NotificationWait\r\n"+
			"X-Mailboxd-Hold: %s\r\nX-Mailboxd-Keepalive: 1s\r\nContent-Length: 0\r\n\r\n", r.path, r.anchor, r.cl.Hold)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("NotificationWait: %s", resp.Status)
		}
		if err != nil {
			r.forget(c)
			r.fail(&r.pollErrs, err)
			return
		}
		if first {
			r.held.Add(1)
			first = false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		r.forget(c)
		if err != nil {
			r.fail(&r.pollErrs, err)
			return
		}
		r.polls.Add(1)
	}
}

// rpcPair opens an OUT then an IN channel and trickles bytes through them.
func (r *channelRun) rpcPair(i int) {
	defer r.wg.Done()
	key := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
	head := func(method string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: bench\r\nX-AnchorMailbox: %s\r\nX-Mailboxd-Channel: %s\r\nContent-Length: %d\r\n\r\n",
			method, r.path, r.anchor, key, 1<<30)
	}
	out, err := r.dial()
	if err != nil {
		r.fail(&r.rpcErrs, err)
		return
	}
	defer r.forget(out)
	if _, err := io.WriteString(out, strings.Replace(head("RPC_OUT_DATA"), "Content-Length: 1073741824", "Content-Length: 0", 1)); err != nil {
		r.fail(&r.rpcErrs, err)
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(out), &http.Request{Method: "RPC_OUT_DATA"})
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("RPC_OUT_DATA: %s", resp.Status)
	}
	if err != nil {
		r.fail(&r.rpcErrs, err)
		return
	}
	in, err := r.dial()
	if err != nil {
		r.fail(&r.rpcErrs, err)
		return
	}
	defer r.forget(in)
	if _, err := io.WriteString(in, head("RPC_IN_DATA")); err != nil {
		r.fail(&r.rpcErrs, err)
		return
	}
	r.pairs.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			r.echoed.Add(int64(n))
			if err != nil {
				r.fail(&r.rpcErrs, err)
				return
			}
		}
	}()
	chunk := make([]byte, r.cl.Trickle)
	t := time.NewTicker(r.cl.TrickleEvery)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			if _, err := in.Write(chunk); err != nil {
				r.fail(&r.rpcErrs, err)
				return
			}
		}
	}
}
