package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"frontdoor/mailboxd"
)

// The background channel load establishes its polls and pairs against
// mailboxd, which echoes the IN channels' bytes on the OUT channels.
func TestChannelLoad(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mailboxd.Run(ctx, mailboxd.Options{Listener: ln, Name: "mbx1"}, nil) }()
	defer func() { cancel(); <-done }()

	r := startChannels(context.Background(), ln.Addr().String(), "/owa/", "alice@example.test",
		ChannelLoad{Polls: 20, RPCPairs: 3, Hold: 100 * time.Millisecond, TrickleEvery: 10 * time.Millisecond}, 10*time.Second)
	for i := 0; i < 500 && (r.polls.Load() < 20 || r.echoed.Load() == 0); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	st := r.stop()
	if st.PollsHeld != 20 || st.PollsCompleted < 20 || st.RPCPairsOpen != 3 || st.RPCBytesEchoed == 0 ||
		st.PollErrors != 0 || st.RPCErrors != 0 {
		t.Fatalf("%s", st)
	}
}
