package gateway

import (
	"bytes"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/l7"
)

// maxMailboxLen is the longest SMTP address (RFC 5321 4.5.3.1: 64 + 1 + 255).
const maxMailboxLen = 320

// router maps a request to the mailbox server holding the active copy of
// the mailbox it is for. Until authentication supplies the user, the mailbox
// comes from X-AnchorMailbox (Exchange's own routing hint) or from the path
// form /{protocol}/u/{mailbox}/...
type router struct {
	dir *directory.Directory
	// endpoint[server.Index][protocol.Index] indexes l7.Config.Endpoints.
	endpoint [][]int
}

// newRouter computes the endpoint of every (server, protocol) pair: the
// server's own port when its address has one, else the protocol's backend
// port. Pairs that land on the same host:port (and TLS settings) share one
// endpoint, so one pool serves them.
func newRouter(cfg *config.Config, dir *directory.Directory, up *upstreamTLS) (*router, []l7.Endpoint) {
	r := &router{dir: dir, endpoint: make([][]int, len(dir.Servers))}
	var endpoints []l7.Endpoint
	index := map[string]int{}
	for _, srv := range dir.Servers {
		row := make([]int, len(cfg.Protocols))
		for pi, p := range cfg.Protocols {
			addr := srv.HostPort(p.BackendPort)
			key := addr
			if srv.TLS {
				// The same host:port reached over TLS with another
				// name to check is another pool.
				key = addr + " tls " + srv.TLSServerName
			}
			i, ok := index[key]
			if !ok {
				i = len(endpoints)
				index[key] = i
				endpoints = append(endpoints, l7.Endpoint{Name: srv.Name, Addr: addr, TLS: up.forServer(srv)})
			}
			row[pi] = i
		}
		r.endpoint[srv.Index] = row
	}
	return r, endpoints
}

// Local answers, as constants so routing never allocates.
const (
	bodyNoMailbox      = "no mailbox to route to: send X-AnchorMailbox or use /{protocol}/u/{mailbox}/"
	bodyUnknownMailbox = "mailbox not found"
	bodyBadMailbox     = "malformed mailbox in request"
)

// Route implements l7.Router.
func (r *router) Route(req *l7.Request) l7.Route {
	var buf [maxMailboxLen]byte
	key := req.Field("x-anchormailbox")
	if len(key) == 0 {
		seg, ok := pathMailbox(req.AfterPrefix)
		if !ok {
			return l7.Route{Endpoint: -1, Status: 400, Body: bodyNoMailbox}
		}
		n, ok := percentDecode(buf[:], seg)
		if !ok {
			return l7.Route{Endpoint: -1, Status: 400, Body: bodyBadMailbox}
		}
		key = buf[:n]
	}
	mb := r.dir.LookupMailbox(key)
	if mb == nil {
		return l7.Route{Endpoint: -1, Status: 404, Body: bodyUnknownMailbox}
	}
	srv := mb.Database.Active
	return l7.Route{Endpoint: r.endpoint[srv.Index][req.Protocol.Index]}
}

// pathMailbox returns {mailbox} from "/u/{mailbox}" or "/u/{mailbox}/...".
func pathMailbox(p []byte) ([]byte, bool) {
	if len(p) < 4 || p[0] != '/' || p[1] != 'u' && p[1] != 'U' || p[2] != '/' {
		return nil, false
	}
	seg := p[3:]
	if i := bytes.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	return seg, len(seg) > 0
}

// percentDecode decodes %XX escapes of src into dst (RFC 3986 2.1).
func percentDecode(dst, src []byte) (int, bool) {
	n := 0
	for i := 0; i < len(src); i++ {
		if n == len(dst) {
			return 0, false
		}
		c := src[i]
		if c == '%' {
			if i+2 >= len(src) {
				return 0, false
			}
			hi, ok1 := unhex(src[i+1])
			lo, ok2 := unhex(src[i+2])
			if !ok1 || !ok2 {
				return 0, false
			}
			c = hi<<4 | lo
			i += 2
		}
		dst[n] = c
		n++
	}
	return n, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
