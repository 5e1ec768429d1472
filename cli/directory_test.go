package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"frontdoor/auth/password"
	"frontdoor/directory"
	"frontdoor/examples"
)

func TestDirectoryCheck(t *testing.T) {
	path := filepath.Join("..", "examples", "directory.toml")
	code, out, errOut := run("directory", "check", path)
	want := path + ": ok (4 users (1 disabled, 2 without a password), 2 databases, 2 servers, 2 sites)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("code %d, stdout %q, stderr %q; want 0, %q, \"\"", code, out, errOut, want)
	}

	dir := t.TempDir()
	one := filepath.Join(dir, "one.toml")
	writeFile(t, one, "[[site]]\nname = \"a\"\n[[server]]\nname = \"m\"\naddress = \"h\"\nsite = \"a\"\n"+
		"[[database]]\nname = \"D\"\nactive = \"m\"\n[[user]]\nlogin = \"u\"\naddress = \"u@ex.test\"\ndatabase = \"D\"\n"+
		"password_hash = \"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"\n", 0o644)
	if code, out, _ := run("directory", "check", one); code != 0 || out != one+": ok (1 user, 1 database, 1 server, 1 site)\n" {
		t.Errorf("one of each: code %d, stdout %q", code, out)
	}

	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "[[user]]\nlogin = \"a b\"\n", 0o644)
	code, out, errOut = run("directory", "check", bad)
	wantErr := bad + ":1: server: at least one [[server]] is required\n" +
		bad + ":1: user[0].address: required\n" +
		bad + ":1: user[0].database: required\n" +
		bad + `:2: user[0].login: "a b": must be at most 64 characters of A-Z, a-z, 0-9, ".", "_" and "-"` + "\n"
	if code != 2 || out != "" || errOut != wantErr {
		t.Errorf("bad file: code %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, wantErr)
	}
	if code, _, errOut := run("directory", "check", filepath.Join(dir, "nope.toml")); code != 2 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: code %d, stderr %q", code, errOut)
	}
}

func TestDirectoryHashPassword(t *testing.T) {
	for _, tc := range []struct{ in, password string }{
		{"s3cret\n", "s3cret"},
		{"s3cret\r\n", "s3cret"},
		{"s3cret", "s3cret"},           // no newline at all
		{"two words \n", "two words "}, // spaces are the password's
		{"first\nsecond\n", "first"},   // one line only
		{"a\r\r\n", "a\r"},             // one line ending, not more
		{strings.Repeat("p", 1024) + "\n", strings.Repeat("p", 1024)},
	} {
		stub[io.Reader](t, &stdin, strings.NewReader(tc.in))
		code, out, errOut := run("directory", "hash-password")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "$argon2id$v=19$m=19456,t=2,p=1$") || !strings.HasSuffix(out, "\n") {
			t.Errorf("%q: code %d, stdout %q, stderr %q", tc.in, code, out, errOut)
			continue
		}
		h := strings.TrimSuffix(out, "\n")
		if ok, err := password.Verify(h, []byte(tc.password)); !ok || err != nil {
			t.Errorf("%q: the hash does not verify %q: %v, %v", tc.in, tc.password, ok, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "empty password on standard input"},
		{"\n", "empty password on standard input"},
		{"\r\n", "empty password on standard input"},
		{strings.Repeat("p", 1025) + "\n", "password longer than 1024 bytes"},
		{strings.Repeat("p", 5000), "password longer than 1024 bytes"},
	} {
		stub[io.Reader](t, &stdin, strings.NewReader(tc.in))
		code, out, errOut := run("directory", "hash-password")
		if code != 2 || out != "" || errOut != "frontdoor directory hash-password: "+tc.want+"\n" {
			t.Errorf("%.20q: code %d, stdout %q, stderr %q; want 2 and %q", tc.in, code, out, errOut, tc.want)
		}
	}
}

// The operator's failover, end to end: the command edits the shared file
// and a Live watching it, as every gateway's does, moves DB01 to mbx2.
func TestDirectorySetActive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.toml")
	if err := os.WriteFile(path, examples.Directory, 0o640); err != nil {
		t.Fatal(err)
	}
	live, err := directory.NewLive(context.Background(), &directory.FileSource{Path: path}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); live.Run(ctx) }()
	defer func() { cancel(); <-done }()

	code, out, errOut := run("directory", "set-active", "--file", path, "--database", "DB01", "--server", "mbx2")
	if want := "DB01: active copy moved from mbx1 to mbx2 in " + path + "\n"; code != 0 || out != want || errOut != "" {
		t.Fatalf("code %d, stdout %q, stderr %q; want 0, %q", code, out, errOut, want)
	}
	got, _ := os.ReadFile(path)
	want := strings.Replace(string(examples.Directory), "active = \"mbx1\"\ncopies = [\"mbx2\"]", "active = \"mbx2\"\ncopies = [\"mbx1\"]", 1)
	if string(got) != want {
		t.Errorf("file after set-active:\n%s", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 as before", fi.Mode())
	}
	deadline := time.Now().Add(3 * time.Second)
	for live.Current().Database("DB01").Active.Name != "mbx2" {
		if time.Now().After(deadline) {
			t.Fatal("the watching Live did not follow set-active within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := live.Current(); d.Generation != 2 || d.LookupMailbox([]byte("alice@example.test")).Database.Active.Name != "mbx2" {
		t.Errorf("generation %d: alice's mailbox not on mbx2", d.Generation)
	}

	// And back, by the same command; then again, which changes nothing.
	if code, out, _ := run("directory", "set-active", "--file", path, "--database", "DB01", "--server", "mbx1"); code != 0 || !strings.Contains(out, "from mbx2 to mbx1") {
		t.Errorf("switch back: code %d, stdout %q", code, out)
	}
	if got, _ := os.ReadFile(path); string(got) != string(examples.Directory) {
		t.Errorf("switching back did not restore the file:\n%s", got)
	}
	if code, out, _ := run("directory", "set-active", "--file", path, "--database", "DB01", "--server", "mbx1"); code != 0 || out != "DB01: mbx1 is already active; "+path+" unchanged\n" {
		t.Errorf("already active: code %d, stdout %q", code, out)
	}
}

func TestDirectorySetActiveErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.toml")
	if err := os.WriteFile(path, examples.Directory, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "[[database]]\nname = \"D\"\nactive = \"m\"\n", 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--file", path, "--database", "DB09", "--server", "mbx2"},
			`frontdoor directory set-active: ` + path + ` has no database "DB09" (defined: DB01, DB02)`},
		{[]string{"--file", path, "--database", "DB01", "--server", "mbx9"},
			`frontdoor directory set-active: ` + path + ` has no server "mbx9" (defined: mbx1, mbx2)`},
		{[]string{"--file", bad, "--database", "D", "--server", "m"},
			bad + `:3: database[0].active: unknown server "m" (none defined)`},
		{[]string{"--file", filepath.Join(dir, "nope.toml"), "--database", "D", "--server", "m"}, "no such file"},
	} {
		code, out, errOut := run(append([]string{"directory", "set-active"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != string(examples.Directory) {
		t.Error("a refused set-active changed the file")
	}
}
