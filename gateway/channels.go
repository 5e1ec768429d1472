package gateway

import (
	"bytes"

	"frontdoor/auth"
	"frontdoor/directory"
	"frontdoor/l7"
)

// Routing of Outlook's long-lived channels (docs/outlook.md): a request
// may name the mailbox it is for, and then it goes to that mailbox's
// server when the authenticated user may open it.

// requestMailbox returns the mailbox a request names, decoded into
// scratch: the target of an RPC over HTTP channel (the query of
// /rpc/rpcproxy.dll?{mailbox}:{port}; a server name there, as older
// clients send, names no mailbox) or a MailboxId query parameter (MAPI
// over HTTP). ok is false when it names none.
func requestMailbox(dir *directory.Directory, req *l7.Request, scratch *[auth.BasicScratchSize]byte) ([]byte, bool) {
	uri := req.Target
	q := bytes.IndexByte(uri, '?')
	if q < 0 {
		return nil, false
	}
	query := uri[q+1:]
	if i := bytes.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	buf := scratch[:min(len(scratch), maxMailboxLen)]
	if m := req.Method; string(m) == "RPC_IN_DATA" || string(m) == "RPC_OUT_DATA" {
		target := query
		if i := bytes.LastIndexByte(target, ':'); i >= 0 {
			target = target[:i]
		}
		n, ok := percentDecode(buf, target)
		if !ok || n == 0 {
			return nil, false
		}
		if dir.Server(string(buf[:n])) != nil || bytes.IndexByte(buf[:n], '@') < 0 {
			return nil, false // a server (or host) name: route by the user
		}
		return buf[:n], true
	}
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		name, value, _ := bytes.Cut(pair, []byte("="))
		if !bytes.EqualFold(name, []byte("mailboxid")) {
			continue
		}
		n, ok := percentDecode(buf, value)
		if !ok || n == 0 {
			// A malformed or empty MailboxId names no mailbox the user
			// may open.
			return buf[:0], true
		}
		return buf[:n], true
	}
	return nil, false
}

// channelMoved reports whether a channel routed by an older table now
// points at a server that no longer holds its mailbox database's active
// copy.
func (t *routeTable) channelMoved(ci l7.ChannelInfo) bool {
	if ci.Key < 0 || int(ci.Key) >= len(t.byKey) || t.byKey[ci.Key] == nil {
		return true
	}
	row := t.endpoint[t.byKey[ci.Key].Active.Index]
	return ci.Protocol >= len(row) || row[ci.Protocol] != ci.Endpoint
}
