package kerberos

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
)

// maxKeytabBytes bounds the keytab file read: a real one holds a few keys
// of a few principals, well under a kilobyte each.
const maxKeytabBytes = 1 << 20

// Keytab is a keytab file kept current: Reload reads it again when it
// changed on disk (another inode, size or modification time); the gateway
// calls it periodically (auth.keytab_check_interval) and on SIGHUP. A file
// that does not parse, or holds no key, is refused and the keys in service
// stay, so a half-copied keytab never locks every client out. A
// verification reads the keys in service once.
type Keytab struct {
	path string
	cur  atomic.Pointer[keySet]

	mu    sync.Mutex // serializes reloads
	stamp fileStamp
}

// keySet is one loaded keytab, immutable once published.
type keySet struct {
	kt *keytab.Keytab
	// realms are the realms of its principals, sorted.
	realms []string
	// summary is "HTTP/mail.example.test@EXAMPLE.TEST kvno 2,3" per
	// principal, for logs.
	summary []string
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

// stampOf identifies the file fi describes: a keytab replaced by rename
// has a new inode even when its size and modification time match.
func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	s.dev, s.ino = fileID(fi)
	return s
}

// LoadKeytab reads the keytab at path; it fails if the file cannot be
// read or holds no key.
func LoadKeytab(path string) (*Keytab, error) {
	k := &Keytab{path: path}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the keytab's file name.
func (k *Keytab) Path() string { return k.path }

// Realms returns the realms of the keytab's principals, sorted.
func (k *Keytab) Realms() []string { return k.cur.Load().realms }

// Summary describes the keys in service, one line per principal with its
// key versions ("HTTP/mail.example.test@EXAMPLE.TEST kvno 2,3"); never key
// material.
func (k *Keytab) Summary() []string { return k.cur.Load().summary }

func (k *Keytab) current() *keytab.Keytab { return k.cur.Load().kt }

// Reload reads the file again if it changed since the last load and swaps
// the new keys in. changed reports whether it did; on error the keys in
// service stay.
func (k *Keytab) Reload() (changed bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f, err := os.Open(k.path)
	if err != nil {
		return false, fmt.Errorf("keytab: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("keytab: %w", err)
	}
	st := stampOf(fi)
	if k.cur.Load() != nil && st == k.stamp {
		return false, nil
	}
	if fi.Size() > maxKeytabBytes {
		return false, fmt.Errorf("keytab %s: %d bytes is more than a keytab holds (limit %d)", k.path, fi.Size(), maxKeytabBytes)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return false, fmt.Errorf("keytab %s: %w", k.path, err)
	}
	ks, err := parseKeytab(data)
	if err != nil {
		return false, fmt.Errorf("keytab %s: %w", k.path, err)
	}
	k.cur.Store(ks)
	k.stamp = st
	return true, nil
}

func parseKeytab(data []byte) (*keySet, error) {
	kt := keytab.New()
	if err := kt.Unmarshal(data); err != nil {
		return nil, err
	}
	if len(kt.Entries) == 0 {
		return nil, errors.New("holds no key")
	}
	ks := &keySet{kt: kt}
	kvnos := map[string][]uint32{}
	for _, e := range kt.Entries {
		name := e.Principal.String()
		if !slices.Contains(kvnos[name], e.KVNO) {
			kvnos[name] = append(kvnos[name], e.KVNO)
		}
		if !slices.Contains(ks.realms, e.Principal.Realm) {
			ks.realms = append(ks.realms, e.Principal.Realm)
		}
	}
	sort.Strings(ks.realms)
	for name, vs := range kvnos {
		slices.Sort(vs)
		parts := make([]string, len(vs))
		for i, v := range vs {
			parts[i] = fmt.Sprint(v)
		}
		ks.summary = append(ks.summary, name+" kvno "+strings.Join(parts, ","))
	}
	sort.Strings(ks.summary)
	return ks, nil
}
