package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"frontdoor/gateway/config"
)

// stateConfig is a configuration with protocols owa and ews whose state
// file is dir/state.json, with the given drain grace.
func stateConfig(t *testing.T, dir, grace string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(dir, "f.toml"), []byte(`directory = "d.toml"
[state]
file = "state.json"
drain_grace = "`+grace+`"
[[listener]]
name = "http"
address = ":8080"
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = 1
[[protocol]]
name = "ews"
path_prefix = "/EWS"
backend_port = 1
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestStateFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"not JSON", `{"components": [`, "not a component state file"},
		{"unknown field", `{"components": [], "extra": 1}`, "not a component state file"},
		{"bad state", `{"components": [{"component": "owa", "state": "offline"}]}`, `component "owa": state "offline"`},
		{"twice", `{"components": [{"component": "owa", "state": "active"}, {"component": "owa", "state": "inactive"}]}`, `component "owa" listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := newComponents(stateConfig(t, dir, "1s"), quiet)
			prefix := filepath.Join(dir, "f.toml") + ":3: state.file: " + filepath.Join(dir, "state.json") + ": "
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %s...%s", err, prefix, tc.want)
			}
		})
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	// A component the configuration no longer has is dropped, not an
	// error; names are matched exactly in the file.
	if err := os.WriteFile(filepath.Join(dir, "state.json"),
		[]byte(`{"components": [{"component": "ews", "state": "inactive", "since": "2026-01-02T03:04:05Z"}, {"component": "pop3", "state": "inactive"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := newComponents(stateConfig(t, dir, "1s"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	got := c.list()
	if len(got) != 3 || got[0].Component != "ServerWideOffline" || got[0].State != "active" ||
		got[2].Component != "ews" || got[2].State != "inactive" || got[2].Since.Format(time.RFC3339) != "2026-01-02T03:04:05Z" {
		t.Fatalf("loaded %+v", got)
	}
	if _, err := c.set("OWA", "inactive", "test"); err != nil {
		t.Fatal(err)
	}
	var f stateFile
	data, _ := os.ReadFile(filepath.Join(dir, "state.json"))
	if err := json.Unmarshal(data, &f); err != nil || len(f.Components) != 3 ||
		f.Components[1] != (stateEntry{"owa", "inactive", c.list()[1].Since}) || f.Components[2].State != "inactive" {
		t.Errorf("written: %v\n%s", err, data)
	}
	// No temporary file is left beside it.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v, want state.json only", entries)
	}
	// A missing file is created with every component active.
	dir2 := filepath.Join(t.TempDir(), "sub")
	if _, err := newComponents(stateConfig(t, dir2, "1s"), quiet); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(dir2, "state.json"))
	if err := json.Unmarshal(data, &f); err != nil || len(f.Components) != 3 || f.Components[0].State != "active" {
		t.Errorf("created: %v\n%s", err, data)
	}
}

// A state that cannot be persisted does not take effect.
func TestStateNotChangedWhenUnwritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	c, err := newComponents(stateConfig(t, dir, "1s"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := c.set("owa", "inactive", "test"); err == nil || !strings.Contains(err.Error(), "component state not changed") {
		t.Fatalf("set with the directory gone: %v", err)
	}
	if c.inactive[1].Load() || c.list()[1].State != "active" {
		t.Error("the state changed although it was not written")
	}
}

func TestComponentNames(t *testing.T) {
	c, err := newComponents(stateConfig(t, t.TempDir(), "1s"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"ServerWideOffline": 0, "serverwideoffline": 0, "owa": 1, "EWS": 2, "pop3": -1, "": -1} {
		if got := c.index(name); got != want {
			t.Errorf("index(%q) = %d, want %d", name, got, want)
		}
	}
	if _, err := c.set("pop3", "inactive", "test"); err == nil || !strings.Contains(err.Error(), "components: ServerWideOffline, owa, ews") {
		t.Errorf("unknown component: %v", err)
	}
	if _, err := c.set("owa", "down", "test"); err == nil {
		t.Error("bad state accepted")
	}
}

// The drain grace: keep-alive ends when it is over, not before, and not at
// all when the component is active again in time; ServerWideOffline ends
// it for every protocol; setting the state a component has changes
// nothing.
func TestDrainGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	c, err := newComponents(stateConfig(t, t.TempDir(), grace.String()), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var mu sync.Mutex
	var calls [][]bool
	c.endKeepAlive = func(p []bool) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, append([]bool(nil), p...))
	}
	last := func() []bool {
		mu.Lock()
		defer mu.Unlock()
		if len(calls) == 0 {
			return nil
		}
		return calls[len(calls)-1]
	}
	ended := func(want ...bool) bool {
		got := last()
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
	first, _ := c.set("owa", "inactive", "test")
	if !ended(false, false) {
		t.Fatalf("keep-alive ended before the grace: %v", last())
	}
	again, _ := c.set("owa", "inactive", "test")
	if !again.Since.Equal(first.Since) {
		t.Error("setting inactive again restarted the grace")
	}
	time.Sleep(grace + 100*time.Millisecond)
	if !ended(true, false) || !c.list()[1].KeepAliveEnded {
		t.Fatalf("after the grace: %v", last())
	}
	c.set("owa", "active", "test")
	if !ended(false, false) {
		t.Fatalf("active again: %v", last())
	}
	// Active again within the grace: the timer does nothing.
	c.set("ews", "inactive", "test")
	time.Sleep(grace / 2)
	c.set("ews", "active", "test")
	time.Sleep(grace)
	if !ended(false, false) {
		t.Fatalf("ews back in time: %v", last())
	}
	c.set("ServerWideOffline", "inactive", "test")
	time.Sleep(grace + 100*time.Millisecond)
	if !ended(true, true) {
		t.Fatalf("ServerWideOffline: %v", last())
	}
}
