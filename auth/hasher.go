package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// Key identifies a credential in Cache: a keyed hash of it, never the
// credential itself.
type Key [32]byte

// Hasher turns credentials into Keys with HMAC-SHA256 (RFC 2104) under a
// secret drawn per process. It is safe for concurrent use and does not
// allocate.
//
// What the secret buys, and what it does not: a Key is not a password hash
// and is not meant to resist an attacker who can read the process's memory
// (they have the secret too, and see credentials in flight anyway). It
// keeps the cache from being a store of passwords or of unsalted password
// hashes: Keys in a heap dump, a profile or a log, without the secret, say
// nothing about the credentials, and a client cannot predict the Key of a
// credential it chooses, so it cannot aim its requests at one cache shard.
// Raw passwords are never kept at all. HMAC rather than SHA-256 over
// secret||message because it is the construction whose keyed-PRF security
// is the textbook one (no length-extension reasoning needed), for two
// extra compression-function calls.
//
// The message is a domain tag, the number of parts and each part preceded
// by its 8-byte length, so the encoding is injective: ("ab","c"), ("a","bc")
// and ("abc") all differ, and a one-part Key (a bearer token) can never equal
// a two-part one (a user name and password).
type Hasher struct {
	ipad, opad [sha256.BlockSize]byte
}

// hasherDomain separates these Keys from any other use of SHA-256 under the
// same secret, and versions the encoding.
const hasherDomain = "frontdoor auth cache key v1\x00"

// NewHasher returns a Hasher with a fresh random 32-byte secret. Keys from
// two Hashers are unrelated, so a process keeps one Hasher for the life of
// its Caches (a Key made by another Hasher never hits).
func NewHasher() *Hasher {
	var secret [32]byte
	// crypto/rand.Read does not fail: the runtime aborts the program if the
	// kernel's generator is unavailable.
	rand.Read(secret[:])
	return newHasher(secret[:])
}

// newHasher precomputes HMAC's padded keys (RFC 2104 section 2). secret is
// at most one block long.
func newHasher(secret []byte) *Hasher {
	h := new(Hasher)
	copy(h.ipad[:], secret)
	copy(h.opad[:], secret)
	for i := range h.ipad {
		h.ipad[i] ^= 0x36
		h.opad[i] ^= 0x5c
	}
	return h
}

// Sum1 returns the Key of a one-part credential such as a bearer token.
func (h *Hasher) Sum1(a []byte) Key { return h.sum(1, a, nil) }

// Sum2 returns the Key of a two-part credential such as a user name and a
// password. It is not variadic because a variadic call allocates its slice.
func (h *Hasher) Sum2(a, b []byte) Key { return h.sum(2, a, b) }

func (h *Hasher) sum(parts byte, a, b []byte) (k Key) {
	// sha256.New is inlined and its Write and Sum devirtualized, so the
	// digest lives on the stack; the allocation gate guards that.
	d := sha256.New()
	d.Write(h.ipad[:])
	var hdr [len(hasherDomain) + 1 + 8]byte
	copy(hdr[:], hasherDomain)
	hdr[len(hasherDomain)] = parts
	binary.BigEndian.PutUint64(hdr[len(hasherDomain)+1:], uint64(len(a)))
	d.Write(hdr[:])
	d.Write(a)
	if parts == 2 {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		d.Write(n[:])
		d.Write(b)
	}
	var inner [sha256.Size]byte
	d.Sum(inner[:0])
	d.Reset()
	d.Write(h.opad[:])
	d.Write(inner[:])
	d.Sum(k[:0])
	return k
}
