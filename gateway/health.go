package gateway

import (
	"sync"
	"sync/atomic"

	"frontdoor/gateway/config"
	"frontdoor/l7"
)

// healthPages answers /{prefix}/healthcheck.htm for every protocol (it is
// l7's HealthPages). A protocol can serve, and its page answers 200 with
// "200 OK<br/>" and the gateway's id, like Exchange's, when the gateway
// is not draining, neither ServerWideOffline nor the protocol's component
// is inactive, and at least one mailbox server holding an active database
// is healthy on the protocol's endpoint. Otherwise 503, with a body that
// says why.
//
// Every possible page is serialized at start; update picks each
// protocol's current one whenever an input changes (a component state, a
// server's health, a directory reload), so a probe is an atomic load and a
// write of ready bytes.
type healthPages struct {
	comps    *components
	backends *backendHealth
	router   *router

	protos []protoPages
	mu     sync.Mutex // serializes update
}

// The pages of a protocol, by why it answers what it does.
const (
	pageOK = iota
	pageOffline
	pageInactive
	pageNoServer
	pageDraining
	numPages
)

// protoPages are one protocol's pages and the index of the current one.
type protoPages struct {
	pages   [numPages]*l7.HealthPage
	reasons [numPages]string
	cur     atomic.Int32
	// comp indexes the protocol's component state, found by name: the
	// components are those of the configuration the gateway started with,
	// and a reload may add, drop or reorder protocols (-1: a protocol
	// added since, which has no state and counts as active).
	comp int
}

var _ l7.HealthPages = (*healthPages)(nil)

func newHealthPages(cfg *config.Config, comps *components, backends *backendHealth, rt *router) *healthPages {
	hp := &healthPages{comps: comps, backends: backends, router: rt, protos: make([]protoPages, len(cfg.Protocols))}
	id := cfg.GatewayID
	for i, p := range cfg.Protocols {
		pp := &hp.protos[i]
		pp.comp = comps.index(p.Name)
		if pp.comp == 0 {
			pp.comp = -1 // a protocol named like the server-wide component
		}
		pp.reasons = [numPages]string{
			pageOK:       "",
			pageOffline:  config.ServerWideOffline + " is inactive",
			pageInactive: "component " + p.Name + " is inactive",
			pageNoServer: "no healthy mailbox server holds an active database for " + p.Name,
			pageDraining: "stopping",
		}
		pp.pages[pageOK] = l7.NewHealthPage(200, "200 OK<br/>"+id)
		for k := pageOffline; k < numPages; k++ {
			pp.pages[k] = l7.NewHealthPage(503, "503 Service Unavailable<br/>"+id+": "+pp.reasons[k])
		}
	}
	hp.update()
	return hp
}

// HealthPage implements l7.HealthPages.
func (hp *healthPages) HealthPage(protocol int, draining bool) *l7.HealthPage {
	p := &hp.protos[protocol]
	if draining {
		return p.pages[pageDraining]
	}
	return p.pages[p.cur.Load()]
}

// update recomputes every protocol's page from the current inputs.
func (hp *healthPages) update() {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	t := hp.router.table.Load()
	for i := range hp.protos {
		page := pageOK
		switch {
		case hp.comps.inactive[0].Load():
			page = pageOffline
		case hp.protos[i].comp > 0 && hp.comps.inactive[hp.protos[i].comp].Load():
			page = pageInactive
		case !hp.canServe(t, i):
			page = pageNoServer
		}
		hp.protos[i].cur.Store(int32(page))
	}
}

// canServe reports whether a mailbox server holding an active database in
// t is healthy on protocol's endpoint.
func (hp *healthPages) canServe(t *routeTable, protocol int) bool {
	for _, db := range t.dir.Databases {
		if ep := t.endpoint[db.Active.Index][protocol]; ep >= 0 && hp.backends.healthy(ep) {
			return true
		}
	}
	return false
}

// ProtocolHealth is what one protocol's health page answers, on /stats.
type ProtocolHealth struct {
	Status int `json:"status"`
	// Reason says why the page answers 503.
	Reason string `json:"reason,omitempty"`
}

// summary is every protocol's page, by protocol name; draining is the
// server's drain.
func (hp *healthPages) summary(cfg *config.Config, draining bool) map[string]ProtocolHealth {
	out := make(map[string]ProtocolHealth, len(hp.protos))
	for i, p := range cfg.Protocols {
		k := int(hp.protos[i].cur.Load())
		if draining {
			k = pageDraining
		}
		out[p.Name] = ProtocolHealth{Status: hp.protos[i].pages[k].Status(), Reason: hp.protos[i].reasons[k]}
	}
	return out
}
