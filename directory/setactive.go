package directory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SetActive moves database's active copy to server in the directory file
// at path, the operator's switchover or failover, and returns the server
// that was active. Every gateway watching the file follows within seconds.
//
// It edits the file in place, keeping comments and layout: the database's
// active value becomes server, and its copies trade places (the old active
// server takes the new one's place among the copies, or joins them if the
// new one was not a copy). The file must validate before the edit, and the
// result is parsed and checked before anything is written; it replaces the
// file by rename (a temporary file in the same directory, with the old
// file's mode and, where permitted, owner), so a watcher reads the old file
// or the new one, never half of either. A symbolic link is followed and
// kept. If server is already active, nothing is written.
//
// Errors in the file are Errors (FILE:LINE: KEY: message, see Error).
// SetActive refuses to write when the file changed while it was being
// edited, rather than lose the other change.
func SetActive(path, database, server string) (previous string, err error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	before := stampOf(real)
	data, err := os.ReadFile(real)
	if err != nil {
		return "", err
	}
	out, previous, err := editActive(path, data, database, server)
	if err != nil || previous == server {
		return previous, err
	}
	return previous, replaceFile(real, out, before)
}

// editActive returns data with database's active server set to server (see
// SetActive) and the server that was active. When server is already active
// it returns data unchanged. name is the file's name in messages.
func editActive(name string, data []byte, database, server string) (out []byte, previous string, err error) {
	d, f, doc, err := parse(name, data)
	if err != nil {
		return nil, "", err
	}
	db := d.Database(database)
	if db == nil {
		return nil, "", fmt.Errorf("%s: no database %q%s", name, database,
			defined(f.Databases, func(e databaseEntry) string { return e.Name }))
	}
	if d.Server(server) == nil {
		return nil, "", fmt.Errorf("%s: no server %q%s", name, server,
			defined(f.Servers, func(e serverEntry) string { return e.Name }))
	}
	previous = db.Active.Name
	if previous == server {
		return data, previous, nil
	}

	i := slices.IndexFunc(f.Databases, func(e databaseEntry) bool { return e.Name == database })
	at := fmt.Sprintf("database[%d]", i)
	active, ok := doc.ValueSpan(at + ".active")
	if !ok {
		return nil, "", fmt.Errorf("%s: database %q: cannot find where active is written", name, database)
	}
	edits := []edit{{active.Start, active.End, quote(server)}}
	copies := f.Databases[i].Copies
	switch j := slices.Index(copies, server); {
	case j >= 0:
		// The two servers trade places; the order of the others stays.
		s, ok := doc.ValueSpan(fmt.Sprintf("%s.copies[%d]", at, j))
		if !ok {
			return nil, "", fmt.Errorf("%s: database %q: cannot find where copies[%d] is written", name, database, j)
		}
		edits = append(edits, edit{s.Start, s.End, quote(previous)})
	case len(copies) > 0:
		s, ok := doc.ValueSpan(fmt.Sprintf("%s.copies[%d]", at, len(copies)-1))
		if !ok {
			return nil, "", fmt.Errorf("%s: database %q: cannot find where copies is written", name, database)
		}
		edits = append(edits, edit{s.End, s.End, ", " + quote(previous)})
	case doc.Has(at + ".copies"): // copies = []
		s, ok := doc.ValueSpan(at + ".copies")
		if !ok || s.End < 1 || data[s.End-1] != ']' {
			return nil, "", fmt.Errorf("%s: database %q: cannot find where copies is written", name, database)
		}
		edits = append(edits, edit{s.End - 1, s.End - 1, quote(previous)})
	case active.Inline:
		edits = append(edits, edit{active.End, active.End, ", copies = [" + quote(previous) + "]"})
	default:
		// A line of its own after active's, indented like it.
		lineStart := bytes.LastIndexByte(data[:active.Start], '\n') + 1
		indent := lineStart
		for indent < len(data) && (data[indent] == ' ' || data[indent] == '\t') {
			indent++
		}
		line := string(data[lineStart:indent]) + "copies = [" + quote(previous) + "]"
		if k := bytes.IndexByte(data[active.End:], '\n'); k >= 0 {
			eol := "\n"
			if pos := active.End + k; pos > 0 && data[pos-1] == '\r' {
				eol = "\r\n"
			}
			pos := active.End + k + 1
			edits = append(edits, edit{pos, pos, line + eol})
		} else {
			edits = append(edits, edit{len(data), len(data), "\n" + line + "\n"})
		}
	}
	out = apply(data, edits)

	// Trust the result only once it parses and says what was meant, and
	// nothing else moved.
	after, err := Parse(name, out)
	if err != nil {
		return nil, "", fmt.Errorf("%s: the edited file would not validate; nothing written:\n%w", name, err)
	}
	if err := sameExceptActive(d, after, database, server, previous); err != nil {
		return nil, "", fmt.Errorf("%s: the edit went wrong (%v); nothing written", name, err)
	}
	return out, previous, nil
}

// edit replaces data[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// apply makes non-overlapping edits to a copy of data.
func apply(data []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return b.start - a.start })
	out := slices.Clone(data)
	for _, e := range edits {
		out = slices.Concat(out[:e.start], []byte(e.text), out[e.end:])
	}
	return out
}

// quote writes s as a TOML basic string. Names have no control characters
// (Parse refuses them), so only quotes and backslashes need escaping.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// sameExceptActive checks that after differs from before only in database's
// active server (now server) and copies (previous in, server out, the
// others unchanged), and that everything else kept its size.
func sameExceptActive(before, after *Directory, database, server, previous string) error {
	if len(before.Users) != len(after.Users) || len(before.Servers) != len(after.Servers) ||
		len(before.Sites) != len(after.Sites) || len(before.Databases) != len(after.Databases) {
		return errors.New("the number of users, servers, sites or databases changed")
	}
	names := func(ss []*Server) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Name)
		}
		slices.Sort(out)
		return out
	}
	for i, b := range before.Databases {
		a := after.Databases[i]
		wantActive, wantCopies := b.Active.Name, names(b.Copies)
		if b.Name == database {
			wantActive = server
			wantCopies = slices.DeleteFunc(wantCopies, func(n string) bool { return n == server })
			wantCopies = append(wantCopies, previous)
			slices.Sort(wantCopies)
		}
		if a.Name != b.Name || a.Active.Name != wantActive || !slices.Equal(names(a.Copies), wantCopies) {
			return fmt.Errorf("database %q: active %s, copies %v; want %s, %v", a.Name, a.Active.Name, names(a.Copies), wantActive, wantCopies)
		}
	}
	return nil
}

// replaceFile writes data to path by rename, keeping the file's mode and,
// where permitted, its owner. before is the file's stamp when it was read:
// if the file has changed since, nothing is written.
func replaceFile(path string, data []byte, before fileStamp) (err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	keepOwner(tmp, fi)
	// On disk before the rename makes it visible: a crash must not leave
	// an empty directory file behind.
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if stampOf(path) != before {
		return fmt.Errorf("%s changed while it was being edited; nothing written, run the command again", path)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable; not every platform can sync a
	// directory, and the file is already in place if this fails.
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}
