package l7

import "testing"

func TestChannelOf(t *testing.T) {
	p := &Protocol{Name: "x", StreamMethods: []string{"SYNCSTREAM"}}
	h := &Handler{cfg: Config{Protocols: []Protocol{*p}}}
	cases := []struct {
		head  string
		proto *Protocol
		want  Channel
	}{
		{"RPC_IN_DATA /rpc/rpcproxy.dll?a@b:6001 HTTP/1.1\r\nHost: h\r\n\r\n", nil, ChannelRPC},
		{"RPC_OUT_DATA /rpc/rpcproxy.dll HTTP/1.1\r\nHost: h\r\n\r\n", nil, ChannelRPC},
		{"rpc_in_data /rpc/ HTTP/1.1\r\nHost: h\r\n\r\n", nil, ChannelNone}, // methods are case-sensitive
		{"POST /mapi/emsmdb/ HTTP/1.1\r\nHost: h\r\nx-requesttype: notificationwait\r\n\r\n", nil, ChannelNotificationWait},
		{"POST /mapi/emsmdb/ HTTP/1.1\r\nHost: h\r\nX-RequestType: Execute\r\n\r\n", nil, ChannelNone},
		{"GET /mapi/emsmdb/ HTTP/1.1\r\nHost: h\r\nX-RequestType: NotificationWait\r\n\r\n", nil, ChannelNone}, // MAPI is POST only
		{"SYNCSTREAM /x HTTP/1.1\r\nHost: h\r\n\r\n", p, ChannelRPC},
		{"SYNCSTREAM /x HTTP/1.1\r\nHost: h\r\n\r\n", nil, ChannelNone},
		{"GET /owa/ HTTP/1.1\r\nHost: h\r\n\r\n", p, ChannelNone},
	}
	for _, c := range cases {
		var rh RequestHead
		buf := []byte(c.head)
		if rej := ScanRequestHead(buf, FindHeadEnd(buf, 0), 1<<20, &rh); rej != nil {
			t.Fatalf("%q: %v", c.head, rej.Reason)
		}
		if got := channelOf(c.proto, rh.Method, rh.FieldLines(buf)); got != c.want {
			t.Errorf("%q: %d, want %d", c.head, got, c.want)
		}
	}
	for m, want := range map[string]bool{"RPC_IN_DATA": true, "RPC_OUT_DATA": true, "SYNCSTREAM": true, "POST": false, "GET": false} {
		if h.mayStream([]byte(m)) != want {
			t.Errorf("mayStream(%s) != %v", m, want)
		}
	}
}
