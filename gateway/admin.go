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
// read at scrape time: see metrics.go), GET and POST /state (the component
// states; see StateRequest), POST /debug/memory/trim (a memory trim now;
// answers the Snapshot's runtime section) and Go's profiling handlers under
// /debug/pprof/. It is a plain net/http server on its own goroutines:
// nothing on it is on the request hot path.
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
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.ComponentStates())
	})
	mux.HandleFunc("POST /state", func(w http.ResponseWriter, r *http.Request) {
		var req StateRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, AdminError{"want a JSON body {\"component\": NAME, \"state\": \"active\" or \"inactive\"}: " + err.Error()})
			return
		}
		st, err := g.SetComponentState(req.Component, req.State, "admin "+r.RemoteAddr)
		switch {
		case errors.Is(err, ErrUnknownComponent) || errors.Is(err, ErrBadState):
			writeJSON(w, http.StatusBadRequest, AdminError{err.Error()})
		case err != nil:
			// The state file could not be written: nothing changed.
			writeJSON(w, http.StatusInternalServerError, AdminError{err.Error()})
		default:
			writeJSON(w, http.StatusOK, st)
		}
	})
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

// StateRequest is the body of POST /state on the admin endpoint: set
// Component (ServerWideOffline or a protocol's name; case does not matter
// when it is unambiguous) to State, "active" or "inactive". The answer is
// the component's ComponentState, or an AdminError with status 400 (an
// unknown component or state) or 500 (the state file could not be
// written: nothing changed).
type StateRequest struct {
	Component string `json:"component"`
	State     string `json:"state"`
}

// AdminError is the JSON body of an admin endpoint's error answer.
type AdminError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// AdminAddr is the bound admin address, or "" when the endpoint is off.
func (g *Gateway) AdminAddr() string { return g.adminAddr }
