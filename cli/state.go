package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"frontdoor/gateway"
)

// defaultAdmin is the admin address of the example configuration.
const defaultAdmin = "127.0.0.1:9901"

// adminTimeout bounds one call to the admin endpoint.
const adminTimeout = 10 * time.Second

// stateIntro is the shared part of the state commands' help.
const stateIntro = "Component states, like Exchange's Set-ServerComponentState: ServerWideOffline\n" +
	"and one component per protocol (named like it), each active or inactive. An\n" +
	"inactive component's health pages (/{prefix}/healthcheck.htm) answer 503 at once,\n" +
	"so the load balancer takes it out of its pool; after [state] drain_grace its\n" +
	"keep-alive connections are told to close. New requests are served throughout.\n" +
	"ServerWideOffline inactive makes every protocol inactive. With [state] file set\n" +
	"the states survive a restart.\n" +
	"\n" +
	"The command talks to the running gateway's admin endpoint ([admin] address)."

func cmdStateGet(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("state get", "[--admin ADDR] [--json]",
		"List the component states of a running gateway.\n\n"+stateIntro)
	admin := fs.String("admin", defaultAdmin, "the gateway's admin endpoint `host:port`")
	asJSON := fs.Bool("json", false, "print the states as JSON")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	}
	if _, _, err := net.SplitHostPort(*admin); err != nil {
		return usageError(fs, stderr, "--admin %q: want host:port", *admin)
	}
	var states []gateway.ComponentState
	if code := callAdmin(fs.Name(), *admin, http.MethodGet, nil, &states, stderr); code != exitOK {
		return code
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(states)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tSTATE\tSINCE\tKEEP-ALIVE")
	for _, st := range states {
		since, ka := "-", "kept"
		if !st.Since.IsZero() {
			since = st.Since.Format(time.RFC3339)
		}
		if st.KeepAliveEnded {
			ka = "ended"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", st.Component, st.State, since, ka)
	}
	_ = tw.Flush()
	return exitOK
}

func cmdStateSet(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("state set", "--component NAME --state active|inactive [--admin ADDR]",
		"Set a component of a running gateway active or inactive; it is written to the\n"+
			"state file (when configured) before it takes effect.\n\n"+stateIntro+"\n\n"+
			"Take a gateway out of its load balancer's pool for maintenance:\n"+
			"  frontdoor state set --component ServerWideOffline --state inactive\n"+
			"and put it back with --state active.")
	admin := fs.String("admin", defaultAdmin, "the gateway's admin endpoint `host:port`")
	component := fs.String("component", "", "ServerWideOffline or a protocol's `NAME` (required)")
	state := fs.String("state", "", "the new `STATE`: active or inactive (required)")
	if code, done := parse(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0))
	case *component == "":
		return usageError(fs, stderr, "--component is required")
	case *state != gateway.StateActive && *state != gateway.StateInactive:
		return usageError(fs, stderr, "--state %q: want active or inactive", *state)
	}
	if _, _, err := net.SplitHostPort(*admin); err != nil {
		return usageError(fs, stderr, "--admin %q: want host:port", *admin)
	}
	body, _ := json.Marshal(gateway.StateRequest{Component: *component, State: *state})
	var st gateway.ComponentState
	if code := callAdmin(fs.Name(), *admin, http.MethodPost, body, &st, stderr); code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "%s: %s", st.Component, st.State)
	if !st.Since.IsZero() {
		fmt.Fprintf(stdout, " since %s", st.Since.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	return exitOK
}

// callAdmin sends a request to /state on the admin endpoint and decodes
// the answer into out. It returns the exit code: 2 for a request the
// gateway refused as wrong (an unknown component), 1 for other failures.
func callAdmin(cmd, admin, method string, body []byte, out any, stderr io.Writer) int {
	client := &http.Client{Timeout: adminTimeout}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://"+admin+"/state", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v (is the gateway running, with [admin] address = %q?)\n", cmd, err, admin)
		return exitFailure
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		fmt.Fprintf(stderr, "%s: reading the answer: %v\n", cmd, err)
		return exitFailure
	}
	if resp.StatusCode != http.StatusOK {
		var e gateway.AdminError
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %q", resp.Status, bytes.TrimSpace(data))
		}
		fmt.Fprintf(stderr, "%s: %s\n", cmd, e.Error)
		if resp.StatusCode == http.StatusBadRequest {
			return exitUsage
		}
		return exitFailure
	}
	if err := json.Unmarshal(data, out); err != nil {
		fmt.Fprintf(stderr, "%s: unexpected answer from %s: %v\n", cmd, admin, err)
		return exitFailure
	}
	return exitOK
}
