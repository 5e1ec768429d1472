package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"frontdoor/directory"
	"frontdoor/gateway/config"
	"frontdoor/l7"
)

// maxMailboxLen is the longest SMTP address (RFC 5321 4.5.3.1: 64 + 1 + 255).
const maxMailboxLen = 320

// router maps a request to the mailbox server holding the active copy of
// the mailbox it is for. On a protocol with authentication that is the
// authenticated user's mailbox (or, when trusted, a delegated mailbox named
// by X-AnchorMailbox); on an anonymous protocol or path, the mailbox named
// by X-AnchorMailbox or by the path form /{protocol}/u/{mailbox}/...
//
// The directory can be replaced at any time (SetDirectory): each one gets a
// routeTable, swapped atomically, so a request is routed by one consistent
// snapshot without locks.
type router struct {
	log    *slog.Logger
	protos []protoPolicy
	auth   *authenticator // nil when no protocol authenticates

	// site and version are the gateway's own (config site, version).
	site       string
	version    directory.Version
	hasVersion bool

	// endpointIndex maps an endpoint key (host:port, TLS name) to its index
	// in l7.Config.Endpoints. Endpoints are fixed when the router is built
	// (at start and by a configuration reload); a server the directory
	// adds later is routable from the next reload.
	endpointIndex map[string]int
	up            *upstreamTLS
	protocols     []config.Protocol

	table atomic.Pointer[routeTable]

	// mu serializes SetDirectory; dbKeys gives every database name a
	// stable key for l7.Route.Key, so a request routed by one table can be
	// rerouted by the next.
	mu     sync.Mutex
	dbKeys map[string]int32
	gen    uint64
	// retire, set by the gateway, drains the backend connections of the
	// endpoints marked true (servers no longer active for any database).
	retire func(endpoints []bool)
	// channels, set by the gateway, closes the long-lived channels the
	// filter picks (l7.Handler.CloseChannels): those whose mailbox
	// database moved to another server.
	channels func(func(l7.ChannelInfo) bool) int
	// swapped, set by the gateway, runs after a new table is in place
	// (the health pages depend on which servers are active).
	swapped func()

	// backends is the endpoints' health, set by the gateway before the
	// router is used: an unhealthy server's mailboxes get 503.
	backends *backendHealth
	// unhealthyHeader is the Retry-After line of that 503.
	unhealthyHeader []byte
}

// protoPolicy is a protocol's access policy, precomputed from its config.
type protoPolicy struct {
	methods     authMethods
	anonymous   [][]byte // path prefixes after the protocol prefix
	crossSite   string   // proxy, redirect, redirect-451
	olderServer string   // proxy, redirect, refuse
	// challenge is the 401 answer's WWW-Authenticate lines.
	challenge []byte
}

// routeTable is the routing state derived from one directory snapshot.
type routeTable struct {
	dir *directory.Directory
	gen uint64
	// endpoint[server.Index][protocol] indexes l7.Config.Endpoints; -1
	// when the server was not known when the gateway started.
	endpoint [][]int
	dbKey    map[*directory.Database]int32
	byKey    []*directory.Database // dbKey -> database in this snapshot
}

// newRouter computes the endpoint of every (server, protocol) pair: the
// server's own port when its address has one, else the protocol's backend
// port. Pairs that land on the same host:port (and TLS settings) share one
// endpoint, so one pool serves them.
//
// gen is the generation of the routing table of the router this one
// replaces (0 for the first): the numbering continues, so that an auth
// cache shared across a reload sees a newer table as newer.
func newRouter(cfg *config.Config, dir *directory.Directory, up *upstreamTLS, auth *authenticator, gen uint64, log *slog.Logger) (*router, []l7.Endpoint, error) {
	r := &router{log: log, auth: auth, site: cfg.Site, endpointIndex: map[string]int{},
		up: up, protocols: cfg.Protocols, dbKeys: map[string]int32{}, gen: gen,
		unhealthyHeader: fmt.Appendf(nil, "Retry-After: %d\r\n", max(int(cfg.Backend.RetryAfter.D()/time.Second), 1))}
	if cfg.Version != "" {
		v, err := directory.ParseVersion(cfg.Version)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: version: %w", cfg.Path, cfg.Line("version"), err)
		}
		r.version, r.hasVersion = v, true
	}
	if cfg.Site != "" && dir.Site(cfg.Site) == nil {
		return nil, nil, fmt.Errorf("%s:%d: site: %q is not a site of the directory", cfg.Path, cfg.Line("site"), cfg.Site)
	}
	var endpoints []l7.Endpoint
	for _, srv := range dir.Servers {
		for _, p := range cfg.Protocols {
			addr, key := r.endpointKey(srv, p)
			if _, ok := r.endpointIndex[key]; !ok {
				r.endpointIndex[key] = len(endpoints)
				endpoints = append(endpoints, l7.Endpoint{Name: srv.Name, Addr: addr, TLS: up.forServer(srv)})
			}
		}
	}
	for _, p := range cfg.Protocols {
		r.protos = append(r.protos, newProtoPolicy(cfg, p))
	}
	r.table.Store(r.buildTable(dir))
	if auth != nil {
		auth.rt.Store(r)
	}
	return r, endpoints, nil
}

func newProtoPolicy(cfg *config.Config, p config.Protocol) protoPolicy {
	pp := protoPolicy{methods: parseMethods(p.Auth), crossSite: p.CrossSite, olderServer: p.OlderServer}
	for _, a := range p.AnonymousPaths {
		pp.anonymous = append(pp.anonymous, []byte(a))
	}
	var ch []byte
	if pp.methods.has(methodNegotiate) {
		// First: clients take the first scheme they support, and
		// Kerberos is the stronger one (RFC 4559 4.1: no token in the
		// challenge).
		ch = append(ch, "WWW-Authenticate: Negotiate\r\n"...)
	}
	if pp.methods.has(methodBasic) {
		ch = fmt.Appendf(ch, "WWW-Authenticate: Basic realm=%q, charset=\"UTF-8\"\r\n", cfg.Auth.Realm)
	}
	if pp.methods.has(methodBearer) {
		ch = fmt.Appendf(ch, "WWW-Authenticate: Bearer realm=%q\r\n", cfg.Auth.Realm)
	}
	pp.challenge = ch
	return pp
}

// endpointKey is the host:port srv serves protocol p on, and the key that
// tells endpoints apart: the same host:port reached over TLS with another
// name to check is another pool.
func (r *router) endpointKey(srv *directory.Server, p config.Protocol) (addr, key string) {
	addr = srv.HostPort(p.BackendPort)
	key = addr
	if srv.TLS {
		key = addr + " tls " + srv.TLSServerName
	}
	return addr, key
}

// covers reports whether the router has an endpoint for every server of
// dir and protocol: whether a server added since it was built is
// routable.
func (r *router) covers(dir *directory.Directory) bool {
	for _, srv := range dir.Servers {
		for _, p := range r.protocols {
			if _, key := r.endpointKey(srv, p); !hasKey(r.endpointIndex, key) {
				return false
			}
		}
	}
	return true
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// buildTable derives the routing table of dir. Called with mu held, or
// before the router is shared.
func (r *router) buildTable(dir *directory.Directory) *routeTable {
	r.gen++
	t := &routeTable{dir: dir, gen: r.gen, endpoint: make([][]int, len(dir.Servers)),
		dbKey: make(map[*directory.Database]int32, len(dir.Databases))}
	for _, srv := range dir.Servers {
		row := make([]int, len(r.protocols))
		for pi, p := range r.protocols {
			_, key := r.endpointKey(srv, p)
			i, ok := r.endpointIndex[key]
			if !ok {
				i = -1
			}
			row[pi] = i
		}
		t.endpoint[srv.Index] = row
	}
	for _, db := range dir.Databases {
		k, ok := r.dbKeys[db.Name]
		if !ok {
			k = int32(len(r.dbKeys))
			r.dbKeys[db.Name] = k
		}
		t.dbKey[db] = k
	}
	t.byKey = make([]*directory.Database, len(r.dbKeys))
	for db, k := range t.dbKey {
		t.byKey[k] = db
	}
	return t
}

// SetDirectory routes new requests by dir from now on. Servers that dir
// adds are logged and not routable (their pools exist only from a start);
// backend connections to servers no longer active for any database are
// drained.
func (r *router) SetDirectory(dir *directory.Directory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.buildTable(dir)
	for _, srv := range dir.Servers {
		if t.endpoint[srv.Index][0] < 0 && len(r.protocols) > 0 {
			r.log.Warn("mailbox server added by the directory is not routable until the next configuration reload (SIGHUP)",
				"server", srv.Name, "address", srv.Address)
		}
	}
	r.table.Store(t)
	if r.swapped != nil {
		r.swapped()
	}
	if r.channels != nil {
		if n := r.channels(t.channelMoved); n > 0 {
			r.log.Info("closed long-lived channels to servers that lost their mailbox database", "channels", n)
		}
	}
	if r.retire == nil {
		return
	}
	// Endpoints still needed: those of every database's active server.
	used := make([]bool, len(r.endpointIndex))
	for _, db := range dir.Databases {
		for _, ep := range t.endpoint[db.Active.Index] {
			if ep >= 0 {
				used[ep] = true
			}
		}
	}
	retire := make([]bool, len(used))
	any := false
	for i, u := range used {
		retire[i] = !u
		any = any || !u
	}
	if any {
		r.retire(retire)
	}
}

// Local answers, as constants so routing never allocates.
const (
	bodyNoMailbox      = "no mailbox to route to: send X-AnchorMailbox or use /{protocol}/u/{mailbox}/"
	bodyUnknownMailbox = "mailbox not found"
	bodyBadMailbox     = "malformed mailbox in request"
	bodyNotRoutable    = "mailbox server not reachable from this gateway yet"
	bodyForbiddenMbx   = "not allowed to open this mailbox"
	bodyOlderServer    = "the mailbox is on a server older than this gateway serves"
	bodyUnhealthy      = "the mailbox server holding this mailbox is unhealthy; try again later"
)

// Route implements l7.Router.
func (r *router) Route(req *l7.Request) l7.Route {
	t := r.table.Load()
	p := &r.protos[req.Protocol.Index]
	if p.methods == 0 || p.isAnonymousPath(req.AfterPrefix) {
		return r.routeAnonymous(t, req)
	}
	return r.auth.route(r, t, p, req)
}

// routeAnonymous routes by X-AnchorMailbox or the /u/{mailbox}/ path.
func (r *router) routeAnonymous(t *routeTable, req *l7.Request) l7.Route {
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
	mb := t.dir.LookupMailbox(key)
	if mb == nil {
		return l7.Route{Endpoint: -1, Status: 404, Body: bodyUnknownMailbox}
	}
	return r.toMailbox(t, &r.protos[req.Protocol.Index], req, mb, nil)
}

// toMailbox routes to the server holding the active copy of mb, applying
// the protocol's cross-site and server-version policies.
func (r *router) toMailbox(t *routeTable, p *protoPolicy, req *l7.Request, mb *directory.User, identity []byte) l7.Route {
	db := mb.Database
	srv := db.Active
	if r.site != "" && srv.Site.Name != r.site && p.crossSite != "proxy" {
		return redirect(p.crossSite == "redirect-451", srv.Site, req)
	}
	if r.hasVersion && srv.Version != (directory.Version{}) && directory.Compare(srv.Version, r.version) < 0 {
		switch p.olderServer {
		case "redirect":
			return redirect(p.crossSite == "redirect-451", srv.Site, req)
		case "refuse":
			// RFC 9110 15.5.20: this gateway cannot produce an
			// authoritative response for that server's mailboxes.
			return l7.Route{Endpoint: -1, Status: 421, Body: bodyOlderServer}
		}
	}
	ep := t.endpoint[srv.Index][req.Protocol.Index]
	if ep < 0 {
		return l7.Route{Endpoint: -1, Status: 503, Body: bodyNotRoutable}
	}
	if !r.backends.healthy(ep) {
		// The database's one active copy is there; nothing else can
		// serve the mailbox until the server recovers or the directory
		// moves the database.
		return l7.Route{Endpoint: -1, Status: 503, Body: bodyUnhealthy, Header: r.unhealthyHeader}
	}
	return l7.Route{Endpoint: ep, Identity: identity, Key: t.dbKey[db]}
}

// redirect sends the client to the external URL of site: 302 with Location
// for browser protocols, or 451 with X-MS-Location, as Exchange answers
// ActiveSync clients whose mailbox lives in another site. The request's
// path and query are kept.
func redirect(activeSync bool, site *directory.Site, req *l7.Request) l7.Route {
	if site.ExternalURL == "" {
		return l7.Route{Endpoint: -1, Status: 503, Body: bodyNotRoutable}
	}
	base := strings.TrimSuffix(site.ExternalURL, "/")
	target := req.Target
	var h []byte
	if activeSync {
		h = fmt.Appendf(h, "X-MS-Location: %s%s\r\n", base, req.Path)
		return l7.Route{Endpoint: -1, Status: 451, Body: "mailbox is served by another site", Header: h}
	}
	h = fmt.Appendf(h, "Location: %s%s\r\n", base, target)
	return l7.Route{Endpoint: -1, Status: 302, Body: "mailbox is served by another site", Header: h}
}

// Reroute implements l7.Config.Reroute: where a request routed by database
// key should go now.
func (r *router) Reroute(key int32, protocol int) int {
	t := r.table.Load()
	if key < 0 || int(key) >= len(t.byKey) || t.byKey[key] == nil {
		return -1
	}
	ep := t.endpoint[t.byKey[key].Active.Index][protocol]
	if ep >= 0 && !r.backends.healthy(ep) {
		return -1
	}
	return ep
}

func (p *protoPolicy) isAnonymousPath(after []byte) bool {
	for _, a := range p.anonymous {
		if len(after) >= len(a) && bytes.EqualFold(after[:len(a)], a) {
			return true
		}
	}
	return false
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
