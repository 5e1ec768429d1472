package cli

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

func TestStateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"state", "set", "--state", "inactive"}, "--component is required"},
		{[]string{"state", "set", "--component", "owa"}, `--state "": want active or inactive`},
		{[]string{"state", "set", "--component", "owa", "--state", "down"}, `--state "down": want active or inactive`},
		{[]string{"state", "set", "--component", "owa", "--state", "active", "--admin", "9901"}, `--admin "9901": want host:port`},
		{[]string{"state", "get", "extra"}, `unexpected argument "extra"`},
		{[]string{"state"}, "frontdoor state COMMAND"},
	} {
		code, _, stderr := run(tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
	code, stdout, _ := run("help", "state", "set")
	if code != exitOK || !strings.Contains(stdout, "Set-ServerComponentState") || !strings.Contains(stdout, "-admin host:port") {
		t.Errorf("help state set: exit %d\n%s", code, stdout)
	}
}

// No gateway listening: a runtime failure (1) that says what to check.
func TestStateNoGateway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{{"state", "get", "--admin", addr}, {"state", "set", "--component", "owa", "--state", "inactive", "--admin", addr}} {
		code, _, stderr := run(args...)
		if code != exitFailure || !strings.Contains(stderr, fmt.Sprintf("is the gateway running, with [admin] address = %q?", addr)) {
			t.Errorf("%q: exit %d %q", args, code, stderr)
		}
	}
}
