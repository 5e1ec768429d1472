package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// serveAdmin runs the operator endpoint until ctx ends: /stats (the
// Snapshot as JSON), /metrics (the same counters and more for Prometheus,
// read at scrape time: see metrics.go), POST /debug/memory/trim (a memory
// trim now; answers the Snapshot's runtime section) and Go's profiling
// handlers under /debug/pprof/. It is a plain net/http server on its own
// goroutines: nothing on it is on the request hot path.
func (g *Gateway) serveAdmin(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.Snapshot())
	})
	// A trim on demand, counted apart from the automatic ones: for
	// measurements that need a baseline without garbage (frontdoor bench)
	// and for operators. It blocks for one full collection.
	mux.HandleFunc("POST /debug/memory/trim", func(w http.ResponseWriter, _ *http.Request) {
		g.trim.trim("admin")
		g.trim.manual.Add(1)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.trim.summary())
	})
	mux.Handle("GET /metrics", g.metricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Error("admin endpoint stopped", "err", err)
	}
}

// AdminAddr is the bound admin address, or "" when the endpoint is off.
func (g *Gateway) AdminAddr() string { return g.adminAddr }
