package tlsterm

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	t0 := time.Unix(1_800_000_000, 0)
	if err := CreateOrRotateKeyFile(path, t0, 90*time.Minute); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %#o, want 0600", fi.Mode().Perm())
	}
	read := func() []time.Time {
		t.Helper()
		created, keys, err := ParseTicketKeys(mustRead(t, path))
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			for j := range i {
				if keys[i] == keys[j] {
					t.Fatal("repeated key")
				}
			}
		}
		return created
	}
	if c := read(); len(c) != 1 || !c[0].Equal(t0) {
		t.Fatalf("created %v", c)
	}
	// An hour later the old key is kept (younger than 90 minutes), newest
	// first; two hours later it is dropped.
	if err := CreateOrRotateKeyFile(path, t0.Add(time.Hour), 90*time.Minute); err != nil {
		t.Fatal(err)
	}
	if c := read(); len(c) != 2 || !c[0].Equal(t0.Add(time.Hour)) || !c[1].Equal(t0) {
		t.Fatalf("after one rotation: %v", c)
	}
	if err := CreateOrRotateKeyFile(path, t0.Add(2*time.Hour), 90*time.Minute); err != nil {
		t.Fatal(err)
	}
	if c := read(); len(c) != 2 || !c[0].Equal(t0.Add(2*time.Hour)) || !c[1].Equal(t0.Add(time.Hour)) {
		t.Fatalf("after two rotations: %v", c)
	}
	if !strings.HasPrefix(string(mustRead(t, path)), "#") {
		t.Error("no header comment")
	}
	// No temporary files left behind.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("%d files in the directory", len(ents))
	}

	// A corrupt file is not overwritten.
	writeTestFile(t, path, []byte("garbage\n"), 0o600)
	if err := CreateOrRotateKeyFile(path, t0, time.Hour); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("rotating a corrupt file: %v", err)
	}
	if string(mustRead(t, path)) != "garbage\n" {
		t.Error("corrupt file overwritten")
	}
}

func TestParseTicketKeysRejects(t *testing.T) {
	key := func(b byte) string {
		k := make([]byte, 32)
		for i := range k {
			k[i] = b + byte(i)
		}
		return base64.StdEncoding.EncodeToString(k)
	}
	good := fmt.Sprintf("# comment\n\n200 %s\n100 %s\n", key(1), key(2))
	if _, keys, err := ParseTicketKeys([]byte(good)); err != nil || len(keys) != 2 {
		t.Fatalf("good file: %d keys, %v", len(keys), err)
	}
	for name, in := range map[string]string{
		"empty":         "# nothing\n",
		"one field":     "200\n",
		"three fields":  "200 " + key(1) + " extra\n",
		"bad time":      "x " + key(1) + "\n",
		"zero time":     "0 " + key(1) + "\n",
		"bad base64":    "200 !!!!\n",
		"short key":     "200 " + base64.StdEncoding.EncodeToString([]byte("short")) + "\n",
		"oldest first":  "100 " + key(1) + "\n200 " + key(2) + "\n",
		"duplicate key": "200 " + key(1) + "\n100 " + key(1) + "\n",
	} {
		if _, _, err := ParseTicketKeys([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPerProcessTicketRotation(t *testing.T) {
	k, err := NewTicketKeys("", time.Hour, 2*time.Hour, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	steps := []struct {
		at   time.Duration
		want int
	}{
		{time.Hour, 2},     // new + the first (just superseded)
		{2 * time.Hour, 3}, // the first was superseded an hour ago: kept
		{4 * time.Hour, 2}, // new + the previous; older ones superseded >= 2h ago
	}
	for _, s := range steps {
		if err := k.Rotate(now.Add(s.at)); err != nil {
			t.Fatal(err)
		}
		if k.Len() != s.want {
			t.Errorf("after rotating at +%v: %d keys, want %d", s.at, k.Len(), s.want)
		}
	}
}
