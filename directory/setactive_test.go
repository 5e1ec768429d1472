package directory

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"frontdoor/examples"
)

// servers3 defines site a and servers m1, m2, m3: every case below starts
// with it.
const servers3 = `[[site]]
name = "a"
[[server]]
name = "m1"
address = "10.0.0.1"
site = "a"
[[server]]
name = "m2"
address = "10.0.0.2"
site = "a"
[[server]]
name = "m3"
address = "10.0.0.3"
site = "a"
`

func TestEditActive(t *testing.T) {
	for _, tc := range []struct {
		name          string
		database, to  string
		before, after string // after servers3
		wantPrevious  string
	}{
		{"copies trade places", "D1", "m2",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m2\"]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m2\"\ncopies = [\"m1\"]\n", "m1"},
		{"the others keep their order", "D1", "m3",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m2\", \"m3\"]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m3\"\ncopies = [\"m2\", \"m1\"]\n", "m1"},
		{"to a server without a copy", "D1", "m3",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m2\"]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m3\"\ncopies = [\"m2\", \"m1\"]\n", "m1"},
		{"empty copies", "D1", "m2",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [ ] # none yet\n",
			"[[database]]\nname = \"D1\"\nactive = \"m2\"\ncopies = [ \"m1\"] # none yet\n", "m1"},
		{"no copies key: a line after active, indented alike", "D1", "m2",
			"[[database]]\n  name = \"D1\"\n  active = \"m1\" # primary\n  # the end\n",
			"[[database]]\n  name = \"D1\"\n  active = \"m2\" # primary\n  copies = [\"m1\"]\n  # the end\n", "m1"},
		{"no copies key, no final newline", "D1", "m2",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"",
			"[[database]]\nname = \"D1\"\nactive = \"m2\"\ncopies = [\"m1\"]\n", "m1"},
		{"CRLF", "D1", "m2",
			"[[database]]\r\nname = \"D1\"\r\nactive = \"m1\"\r\n[[database]]\r\nname = \"D2\"\r\nactive = \"m1\"\r\n",
			"[[database]]\r\nname = \"D1\"\r\nactive = \"m2\"\r\ncopies = [\"m1\"]\r\n[[database]]\r\nname = \"D2\"\r\nactive = \"m1\"\r\n", "m1"},
		{"multi-line copies with comments", "D1", "m2",
			"[[database]]\nname = \"D1\"\nactive = 'm1'\ncopies = [\n  \"m2\", # warm standby\n  \"m3\", # lagged\n]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m2\"\ncopies = [\n  \"m1\", # warm standby\n  \"m3\", # lagged\n]\n", "m1"},
		{"only the named database", "D2", "m3",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m3\"]\n[[database]]\nname = \"D2\"\nactive = \"m1\"\ncopies = [\"m3\"]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m3\"]\n[[database]]\nname = \"D2\"\nactive = \"m3\"\ncopies = [\"m1\"]\n", "m1"},
		{"names with spaces", "Mailbox Database 01", "m2",
			"[[database]]\nname = \"Mailbox Database 01\"\nactive = \"m1\"\n",
			"[[database]]\nname = \"Mailbox Database 01\"\nactive = \"m2\"\ncopies = [\"m1\"]\n", "m1"},
		{"already active", "D1", "m1",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m2\"]\n",
			"[[database]]\nname = \"D1\"\nactive = \"m1\"\ncopies = [\"m2\"]\n", "m1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, prev, err := editActive("d.toml", []byte(servers3+tc.before), tc.database, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(string(out), servers3); got != tc.after || prev != tc.wantPrevious {
				t.Errorf("got previous %q and:\n%s\nwant previous %q and:\n%s", prev, got, tc.wantPrevious, tc.after)
			}
		})
	}
}

// Databases written as an array of inline tables get copies inline.
func TestEditActiveInline(t *testing.T) {
	const before = `database = [
  { name = "D1", active = "m1" }, # inline
  { name = "D2", active = "m1", copies = ["m2"] },
]
`
	const after = `database = [
  { name = "D1", active = "m2", copies = ["m1"] }, # inline
  { name = "D2", active = "m1", copies = ["m2"] },
]
`
	// Top-level keys come before any table header.
	out, _, err := editActive("d.toml", []byte(before+servers3), "D1", "m2")
	if err != nil {
		t.Fatal(err)
	}
	if want := after + servers3; string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

// Names are written back as TOML strings, whatever they contain.
func TestEditActiveQuotes(t *testing.T) {
	data := servers3 + "[[server]]\nname = 'm\"4\\x'\naddress = \"10.0.0.4\"\nsite = \"a\"\n" +
		"[[database]]\nname = \"D1\"\nactive = \"m1\"\n"
	out, _, err := editActive("d.toml", []byte(data), "D1", `m"4\x`)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "active = \"m\\\"4\\\\x\"\ncopies = [\"m1\"]\n") {
		t.Errorf("got:\n%s", out)
	}
}

func TestEditActiveErrors(t *testing.T) {
	good := servers3 + "[[database]]\nname = \"D1\"\nactive = \"m1\"\n[[database]]\nname = \"D2\"\nactive = \"m2\"\n"
	for _, tc := range []struct {
		name, data, database, server, want string
	}{
		{"unknown database", good, "D9", "m2", `d.toml: no database "D9" (defined: D1, D2)`},
		{"unknown server", good, "D1", "m9", `d.toml: no server "m9" (defined: m1, m2, m3)`},
		{"server names match exactly", good, "D1", "M2", `d.toml: no server "M2" (defined: m1, m2, m3)`},
		{"invalid file", good + "[[database]]\nname = \"D3\"\nactive = \"m9\"\n", "D1", "m2",
			`d.toml:23: database[2].active: unknown server "m9" (defined: m1, m2, m3)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := editActive("d.toml", []byte(tc.data), tc.database, tc.server); err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestSetActive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.toml")
	if err := os.WriteFile(path, examples.Directory, 0o640); err != nil {
		t.Fatal(err)
	}
	// Operators often point at the file through a link (a ConfigMap, a
	// "current" link): the target is edited, the link kept.
	link := filepath.Join(dir, "current.toml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	prev, err := SetActive(link, "DB01", "mbx2")
	if err != nil || prev != "mbx1" {
		t.Fatalf("SetActive = %q, %v; want mbx1", prev, err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(examples.Directory), "active = \"mbx1\"\ncopies = [\"mbx2\"]", "active = \"mbx2\"\ncopies = [\"mbx1\"]", 1)
	if string(got) != want {
		t.Errorf("file after SetActive:\n%s", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 as before", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files left behind: %v", entries)
	}

	// Already active: nothing written.
	fi, _ := os.Stat(path)
	if prev, err := SetActive(path, "DB01", "mbx2"); err != nil || prev != "mbx2" {
		t.Errorf("SetActive to the active server = %q, %v", prev, err)
	}
	if fi2, _ := os.Stat(path); !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("the file was rewritten although nothing changed")
	}

	// Errors leave the file alone.
	if _, err := SetActive(path, "DB09", "mbx1"); err == nil {
		t.Error("unknown database: no error")
	}
	if _, err := SetActive(filepath.Join(dir, "nope.toml"), "DB01", "mbx1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != want {
		t.Error("a failed SetActive changed the file")
	}
}

// A directory the process cannot write to is an error, and leaves the file
// as it was.
func TestSetActiveUnwritable(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() == 0 {
		t.Skip("permissions do not stop root")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.toml")
	if err := os.WriteFile(path, examples.Directory, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if _, err := SetActive(path, "DB01", "mbx2"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("err = %v, want a permission error", err)
	}
}
