package tlsterm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"frontdoor/internal/atomicfile"
)

// The key file format is described in the package documentation
// ("Session-ticket key files").

const (
	ticketKeyLen       = 32
	maxTicketKeys      = 64
	ticketFileHeader   = "# frontdoor session-ticket keys: newest first, one per line: <unix-created> <base64 of 32 bytes>\n"
	defaultTicketPoll  = 10 * time.Second
	defaultRotation    = 12 * time.Hour
	defaultTicketLife  = 24 * time.Hour
	ticketFileMaxBytes = 64 << 10
)

type ticketKey struct {
	created time.Time
	key     [ticketKeyLen]byte
}

// ParseTicketKeys parses a session-ticket key file's contents.
func ParseTicketKeys(data []byte) ([]time.Time, [][32]byte, error) {
	keys, err := parseTicketKeys(data)
	if err != nil {
		return nil, nil, err
	}
	created := make([]time.Time, len(keys))
	raw := make([][32]byte, len(keys))
	for i, k := range keys {
		created[i], raw[i] = k.created, k.key
	}
	return created, raw, nil
}

func parseTicketKeys(data []byte) ([]ticketKey, error) {
	if len(data) > ticketFileMaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", ticketFileMaxBytes)
	}
	var keys []ticketKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"<unix-created> <base64 key>\"", line)
		}
		sec, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || sec <= 0 {
			return nil, fmt.Errorf("line %d: bad creation time %q", line, f[0])
		}
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: key is not base64: %v", line, err)
		}
		if len(raw) != ticketKeyLen {
			return nil, fmt.Errorf("line %d: key is %d bytes, want %d", line, len(raw), ticketKeyLen)
		}
		k := ticketKey{created: time.Unix(sec, 0)}
		copy(k.key[:], raw)
		for i, o := range keys {
			if o.key == k.key {
				return nil, fmt.Errorf("line %d: same key as key %d", line, i+1)
			}
		}
		if n := len(keys); n > 0 && k.created.After(keys[n-1].created) {
			return nil, fmt.Errorf("line %d: keys must be listed newest first", line)
		}
		if keys = append(keys, k); len(keys) > maxTicketKeys {
			return nil, fmt.Errorf("more than %d keys", maxTicketKeys)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

func formatTicketKeys(keys []ticketKey) []byte {
	var b bytes.Buffer
	b.WriteString(ticketFileHeader)
	for _, k := range keys {
		fmt.Fprintf(&b, "%d %s\n", k.created.Unix(), base64.StdEncoding.EncodeToString(k.key[:]))
	}
	return b.Bytes()
}

// readTicketFile reads and checks a key file: mode, size, syntax.
func readTicketFile(path string) ([]ticketKey, fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("tlsterm: ticket key file %s: %w", path, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fileStamp{}, fmt.Errorf("tlsterm: ticket key file %s: mode %#o is readable by others; want 0600", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("tlsterm: ticket key file %s: %w", path, err)
	}
	keys, err := parseTicketKeys(data)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("tlsterm: ticket key file %s: %w", path, err)
	}
	return keys, fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true}, nil
}

// CreateOrRotateKeyFile creates the key file at path with one new key, or
// rotates an existing one: a new key (created now) goes first and keys
// created keep or longer before now are dropped (keep <= 0 keeps only the
// new key). An existing file that does not parse is left alone and an
// error returned. The file is replaced atomically (a temporary file in the
// same directory, fsynced, renamed) with mode 0600.
func CreateOrRotateKeyFile(path string, now time.Time, keep time.Duration) error {
	var old []ticketKey
	if _, err := os.Stat(path); err == nil {
		if old, _, err = readTicketFile(path); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tlsterm: ticket key file %s: %w", path, err)
	}
	nk := ticketKey{created: now.Truncate(time.Second)}
	if _, err := rand.Read(nk.key[:]); err != nil {
		return err
	}
	keys := []ticketKey{nk}
	for _, k := range old {
		if keep > 0 && now.Sub(k.created) < keep && len(keys) < maxTicketKeys {
			keys = append(keys, k)
		}
	}
	// A key "from the future" (clock skew between hosts) must not end up in
	// front of the new one.
	for i := 1; i < len(keys); i++ {
		if keys[i].created.After(nk.created) {
			keys[i].created = nk.created
		}
	}
	return writeTicketFile(path, formatTicketKeys(keys))
}

// TicketKeys keeps the session-ticket keys of one or more tls.Configs.
//
// With a key file it loads the file and reloads it when its size or
// modification time changes (polled by Run); a file that fails to load is
// refused, logged, and the keys in use stay. Without a file it generates
// random per-process keys and rotates them every rotation: the newest
// encrypts, and a superseded key still decrypts for lifetime after it was
// superseded, so a ticket is honoured for at least lifetime. Per-process
// keys mean a client resumes only at the process that issued its ticket.
type TicketKeys struct {
	file     string
	rotation time.Duration
	lifetime time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	keys    []ticketKey
	stamp   fileStamp
	configs []*tls.Config
}

// NewTicketKeys loads file, or without one generates the first per-process
// key. rotation and lifetime default to 12h and 24h; they apply to
// per-process keys only. log may be nil.
func NewTicketKeys(file string, rotation, lifetime time.Duration, log *slog.Logger) (*TicketKeys, error) {
	if rotation <= 0 {
		rotation = defaultRotation
	}
	if lifetime <= 0 {
		lifetime = defaultTicketLife
	}
	if log == nil {
		log = slog.Default()
	}
	k := &TicketKeys{file: file, rotation: rotation, lifetime: lifetime, log: log}
	if file != "" {
		if err := k.Reload(); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err := k.Rotate(time.Now()); err != nil {
		return nil, err
	}
	return k, nil
}

// Register applies the current keys to cfg now and on every change.
func (k *TicketKeys) Register(cfg *tls.Config) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.configs = append(k.configs, cfg)
	cfg.SetSessionTicketKeys(rawKeys(k.keys))
}

func rawKeys(keys []ticketKey) [][32]byte {
	out := make([][32]byte, len(keys))
	for i, k := range keys {
		out[i] = k.key
	}
	return out
}

func (k *TicketKeys) applyLocked() {
	raw := rawKeys(k.keys)
	for _, cfg := range k.configs {
		// Safe while handshakes use cfg: it swaps the keys under cfg's
		// own mutex.
		cfg.SetSessionTicketKeys(raw)
	}
}

// Reload reads the key file again and applies it. On error the keys in use
// stay. Without a file it does nothing.
func (k *TicketKeys) Reload() error {
	if k.file == "" {
		return nil
	}
	keys, stamp, err := readTicketFile(k.file)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.stamp = stampOf(k.file) // retry only after the file changes again
		return err
	}
	k.keys, k.stamp = keys, stamp
	k.applyLocked()
	k.log.Info("tls session-ticket keys loaded", "file", k.file, "keys", len(keys), "newest", keys[0].created.UTC().Format(time.RFC3339))
	return nil
}

// Rotate adds a new per-process key created at now and drops keys
// superseded more than lifetime before now. With a key file it does
// nothing: the file's owner rotates.
func (k *TicketKeys) Rotate(now time.Time) error {
	if k.file != "" {
		return nil
	}
	nk := ticketKey{created: now}
	if _, err := rand.Read(nk.key[:]); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := []ticketKey{nk}
	supersededAt := now
	for _, o := range k.keys {
		if now.Sub(supersededAt) < k.lifetime && len(keys) < maxTicketKeys {
			keys = append(keys, o)
		}
		supersededAt = o.created
	}
	k.keys = keys
	k.applyLocked()
	return nil
}

// Len returns the number of keys in use.
func (k *TicketKeys) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// Run rotates per-process keys on schedule, or polls the key file every
// poll (default 10s) and reloads it when it changed, until ctx is done.
func (k *TicketKeys) Run(ctx context.Context, poll time.Duration) {
	every := k.rotation
	if k.file != "" {
		if every = poll; every <= 0 {
			every = defaultTicketPoll
		}
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			if k.file == "" {
				if err := k.Rotate(now); err != nil {
					k.log.Error("tls session-ticket key rotation failed", "err", err)
				}
				continue
			}
			k.mu.Lock()
			changed := stampOf(k.file) != k.stamp
			k.mu.Unlock()
			if changed {
				if err := k.Reload(); err != nil {
					k.log.Error("tls session-ticket key file refused; keeping the keys in use", "err", err)
				}
			}
		}
	}
}

// writeTicketFile replaces the ticket key file atomically, readable by its
// owner only (internal/atomicfile).
func writeTicketFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("tlsterm: %s: %w", path, err)
	}
	return nil
}
