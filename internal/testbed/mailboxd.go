package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"frontdoor/mailboxd"
)

// Stats is a mailboxd's counters (see mailboxd.Stats).
type Stats = mailboxd.Stats

const (
	// mailboxdHost is where reference mailbox servers listen.
	mailboxdHost = "127.0.0.1"
	// readyTimeout bounds how long a started mailboxd may take to answer.
	readyTimeout = 10 * time.Second
	// restartTimeout bounds Restart's retries to bind the same port.
	restartTimeout = 5 * time.Second
	// startAttempts bounds StartMailboxd's retries with a new port when
	// another process takes the free port first.
	startAttempts = 5
)

// Mailboxd is a reference mailbox server (`frontdoor mailboxd`) running as a
// child process on a loopback port.
type Mailboxd struct {
	name  string
	port  int
	owner testing.TB // the test that started it: its cleanup kills the process
	proc  *Process
	args  []string // extra command-line arguments
}

// StartMailboxd starts `frontdoor mailboxd --listen 127.0.0.1:PORT --name
// name` on a free port and returns once it answers HTTP. The server is
// killed when t ends, and its output is logged if t failed.
func StartMailboxd(t testing.TB, name string) *Mailboxd {
	t.Helper()
	return StartMailboxdArgs(t, name)
}

// StartMailboxdArgs is StartMailboxd with extra mailboxd arguments (such as
// --identity-keys FILE); Restart uses them again.
func StartMailboxdArgs(t testing.TB, name string, args ...string) *Mailboxd {
	t.Helper()
	m := &Mailboxd{name: name, owner: t, args: args}
	binary := Binary(t)
	var errs []error
	for range startAttempts {
		m.port = FreePort(t, mailboxdHost)
		err := m.start(binary, readyTimeout)
		if err == nil {
			return m
		}
		errs = append(errs, err)
		if !errors.Is(err, errExited) {
			break // not a lost race for the port: retrying will not help
		}
	}
	t.Fatalf("testbed: starting mailboxd %q: %v", name, errors.Join(errs...))
	return nil
}

// start runs the process on m.port and waits until it answers as m.name.
func (m *Mailboxd) start(binary string, timeout time.Duration) error {
	p, err := startProcess(binary, append([]string{"mailboxd", "--listen", m.Addr(), "--name", m.name}, m.args...))
	if err != nil {
		return err
	}
	p.killAtCleanup(m.owner)
	m.proc = p
	// Poll the stats page, not the health page: mailboxd does not count the
	// harness's control connections, so readiness checks leave no trace in
	// the counters tests assert on. Checking the name guards against a
	// different server that took the port.
	err = pollHTTP(m.URL(mailboxd.StatsPath), timeout, p.Exited(), func(body []byte) error {
		var st Stats
		if err := json.Unmarshal(body, &st); err != nil {
			return err
		}
		if st.Server != m.name {
			return fmt.Errorf("answered by mailboxd %q, not %q", st.Server, m.name)
		}
		return nil
	})
	if err != nil {
		p.Kill()
		return fmt.Errorf("%s: %w\n%s", p, err, p.Output())
	}
	return nil
}

// Name returns the server's name.
func (m *Mailboxd) Name() string { return m.name }

// Addr returns the server's host:port.
func (m *Mailboxd) Addr() string {
	return net.JoinHostPort(mailboxdHost, strconv.Itoa(m.port))
}

// Port returns the server's TCP port.
func (m *Mailboxd) Port() int { return m.port }

// URL returns the http URL of path on the server itself (not through the
// gateway).
func (m *Mailboxd) URL(path string) string { return "http://" + m.Addr() + path }

// Process returns the current child process (a new one after Restart).
func (m *Mailboxd) Process() *Process { return m.proc }

// Stop kills the server with SIGKILL and waits for it to exit, so that its
// connections die the way they do when a mailbox server crashes: without a
// graceful close of anything in flight.
func (m *Mailboxd) Stop() { m.proc.Kill() }

// Restart stops the server if it is running and starts it again on the same
// port with the same name, retrying the bind for up to 5 s (the port can
// be briefly unavailable). Its counters start from zero. t is failed if the
// server does not come back; cleanup stays with the test that started it.
func (m *Mailboxd) Restart(t testing.TB) {
	t.Helper()
	m.Stop()
	binary := Binary(t)
	deadline := time.Now().Add(restartTimeout)
	for {
		err := m.start(binary, max(time.Until(deadline), time.Second))
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatalf("testbed: restarting mailboxd %q on %s: %v", m.name, m.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stats fetches the server's counters directly (not through the gateway).
// The fetch uses its own connection, which mailboxd leaves out of the
// connection counters.
func (m *Mailboxd) Stats(t testing.TB) Stats {
	t.Helper()
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   5 * time.Second,
	}
	resp, err := client.Get(m.URL(mailboxd.StatsPath))
	if err != nil {
		t.Fatalf("testbed: mailboxd %q stats: %v", m.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testbed: mailboxd %q stats: %v", m.name, err)
	}
	var st Stats
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("testbed: mailboxd %q stats: %s: %q", m.name, resp.Status, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("testbed: mailboxd %q stats: %v in %q", m.name, err, body)
	}
	return st
}
