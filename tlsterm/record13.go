package tlsterm

// tlsterm's own TLS 1.3 record layer, used after crypto/tls has done the
// handshake.
//
// Why: crypto/tls's Read allocates a reader each time it fetches ciphertext
// (Go 1.26, conn.go readFromUntil), copies every record twice (into its
// raw-input buffer, then out to the caller) and keeps per connection its
// Conn, two AEAD states, the raw-input and handshake buffers (about 6.5 KiB
// after a handshake; see TestCryptoTLSRetainsLittleAfterHandshake). On the
// loop, a TLS 1.3 record needs only the traffic key, an IV and a sequence
// number per direction (RFC 8446 section 5), so once the handshake is done
// tlsterm takes the application traffic secrets from crypto/tls's key log
// (secrets.go), derives the keys itself (section 7.3) and lets the
// tls.Conn go: records are decrypted in place in the plaintext buffer and
// encrypted in place in the buffer handed to gnet, with no allocation.
//
// What it handles after the handshake (RFC 8446):
//   - application data (section 5.1), including empty records;
//   - alerts (section 6): close_notify ends the input, user_canceled is
//     ignored, every other alert is fatal;
//   - KeyUpdate (section 4.6.3) in both directions: the read key changes
//     at once; when the peer asks, tlsterm sends its own KeyUpdate before
//     its next application data and changes its write key;
//   - padding of the inner plaintext (section 5.4).
//
// Everything else is refused with the alert section 6.2 names: another
// post-handshake message (a client sends none other; tlsterm never asks
// for post-handshake authentication), a handshake message split across
// records or followed by data after a KeyUpdate (section 5.1: a key change
// ends the record), an unprotected record, an oversized record, a record
// that fails to decrypt. As in crypto/tls, more than maxUselessRecords
// records in a row without application data end the connection.
//
// TLS 1.2 connections, client connections (client.go) and connections
// whose secrets are not found keep crypto/tls's record layer.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash"
	"slices"
	"strconv"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record content types (RFC 8446 section 5.1).
const (
	recordTypeChangeCipherSpec = 20
	recordTypeAlert            = 21
	recordTypeHandshake        = 22
	recordTypeApplicationData  = 23
)

const (
	// maxCiphertext13 bounds a protected record's length (RFC 8446
	// section 5.2: 2^14 + 256).
	maxCiphertext13 = 1<<14 + 256
	// maxInnerPlaintext bounds the decrypted TLSInnerPlaintext: content,
	// type and padding (RFC 8446 section 5.4: 2^14 + 1).
	maxInnerPlaintext = 1<<14 + 1
	// aeadTagLen is the tag length of the three TLS 1.3 AEADs.
	aeadTagLen = 16
	// ivLen is their nonce length (RFC 8446 section 5.3).
	ivLen = 12
	// maxUselessRecords bounds the records in a row that carry no
	// application data (empty records, KeyUpdates, user_canceled), as
	// crypto/tls does with the same number.
	maxUselessRecords = 16
	// handshakeTypeKeyUpdate is the KeyUpdate message type (RFC 8446
	// section 4).
	handshakeTypeKeyUpdate = 24
)

// Alert levels and descriptions (RFC 8446 section 6).
const (
	alertLevelWarning = 1
	alertLevelFatal   = 2

	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertInternalError     = 80
	alertUserCanceled      = 90
)

var alertNames = map[uint8]string{
	alertCloseNotify:       "close notify",
	alertUnexpectedMessage: "unexpected message",
	alertBadRecordMAC:      "bad record MAC",
	alertRecordOverflow:    "record overflow",
	alertIllegalParameter:  "illegal parameter",
	alertDecodeError:       "error decoding message",
	alertInternalError:     "internal error",
	alertUserCanceled:      "user canceled",
}

// AlertError is the error a connection on tlsterm's record layer fails
// with: an alert it sent (Remote false) or one the peer sent (Remote true).
type AlertError struct {
	Description uint8
	Remote      bool
}

func (e AlertError) Error() string {
	name, ok := alertNames[e.Description]
	if !ok {
		name = "alert(" + strconv.Itoa(int(e.Description)) + ")"
	}
	if e.Remote {
		return "tlsterm: remote error: tls: " + name
	}
	return "tlsterm: local error: tls: " + name
}

// errShutdown is returned by writes after CloseWrite, as crypto/tls does.
var errShutdown = errors.New("tlsterm: protocol is shutdown")

// suite13 is what the record layer needs of a TLS 1.3 cipher suite
// (RFC 8446 appendix B.4).
type suite13 struct {
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var (
	suiteAES128 = &suite13{16, sha256.New, newAESGCM}
	suiteAES256 = &suite13{32, sha512.New384, newAESGCM}
	suiteChaCha = &suite13{chacha20poly1305.KeySize, sha256.New, chacha20poly1305.New}
)

func suite13ByID(id uint16) *suite13 {
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return suiteAES128
	case tls.TLS_AES_256_GCM_SHA384:
		return suiteAES256
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return suiteChaCha
	}
	return nil
}

// expandLabel is HKDF-Expand-Label with an empty context (RFC 8446
// section 7.1).
func expandLabel(h func() hash.Hash, secret []byte, label string, n int) []byte {
	const prefix = "tls13 "
	info := make([]byte, 0, 4+len(prefix)+len(label))
	info = binary.BigEndian.AppendUint16(info, uint16(n))
	info = append(info, byte(len(prefix)+len(label)))
	info = append(info, prefix...)
	info = append(info, label...)
	info = append(info, 0) // context: empty
	out, err := hkdf.Expand(h, secret, string(info), n)
	if err != nil {
		panic("tlsterm: HKDF-Expand-Label: " + err.Error()) // only for n > 255 hash lengths
	}
	return out
}

// direction is one direction's protection state (RFC 8446 section 7.3).
type direction struct {
	suite  *suite13
	secret []byte // application_traffic_secret_N, for the next KeyUpdate
	aead   cipher.AEAD
	iv     [ivLen]byte
	nonce  [ivLen]byte // lives here so that passing it to the AEAD does not allocate
	seq    uint64
}

// setSecret installs a traffic secret: key and IV derived from it, the
// sequence number back to 0.
func (d *direction) setSecret(s *suite13, secret []byte) error {
	aead, err := s.aead(expandLabel(s.hash, secret, "key", s.keyLen))
	if err != nil {
		return err
	}
	d.suite, d.secret, d.aead, d.seq = s, secret, aead, 0
	copy(d.iv[:], expandLabel(s.hash, secret, "iv", ivLen))
	return nil
}

// update moves to the next traffic secret (RFC 8446 section 7.2).
func (d *direction) update() error {
	return d.setSecret(d.suite, expandLabel(d.suite.hash, d.secret, "traffic upd", d.suite.hash().Size()))
}

// nextNonce returns the nonce of the next record and counts it: the
// sequence number, big-endian, XORed into the IV's last 8 bytes (RFC 8446
// section 5.3).
func (d *direction) nextNonce() ([]byte, bool) {
	if d.seq == ^uint64(0) {
		// The sequence number must not wrap (section 5.3); no connection
		// gets near 2^64 records.
		return nil, false
	}
	d.nonce = d.iv
	for i := range 8 {
		d.nonce[ivLen-1-i] ^= byte(d.seq >> (8 * i))
	}
	d.seq++
	return d.nonce[:], true
}

// records13 is the record layer of one TLS 1.3 connection after its
// handshake. On the loop it is used by the loop only; on a detached
// connection the reader uses in, hdr, nhdr and useless, and the writer
// out, under their own locks; updateOut passes between them.
type records13 struct {
	in, out direction
	// hdr holds the header of the record being read until its body has
	// arrived; nhdr counts its bytes.
	hdr     [recordHeaderLen]byte
	nhdr    uint8
	useless uint8 // records in a row without application data
	// updateOut: the peer asked for a KeyUpdate; send one before the
	// next application data (RFC 8446 section 4.6.3).
	updateOut atomic.Bool
}

// newRecords13 sets up the record layer of a server connection from its
// application traffic secrets. wseq is the number of records crypto/tls
// already wrote with the server's secret (its session tickets).
func newRecords13(suiteID uint16, clientSecret, serverSecret []byte, wseq uint64) (*records13, error) {
	s := suite13ByID(suiteID)
	if s == nil {
		return nil, errors.New("tlsterm: unknown TLS 1.3 cipher suite " + strconv.Itoa(int(suiteID)))
	}
	r := &records13{}
	if err := r.in.setSecret(s, clientSecret); err != nil {
		return nil, err
	}
	if err := r.out.setSecret(s, serverSecret); err != nil {
		return nil, err
	}
	r.out.seq = wseq
	return r, nil
}

// checkHeader checks a protected record's header (RFC 8446 section 5.2)
// and returns its length, or the alert to send. legacy_record_version is
// ignored, as the section says.
func checkHeader(hdr *[recordHeaderLen]byte) (n int, alert uint8) {
	n = int(hdr[3])<<8 | int(hdr[4])
	switch {
	case hdr[0] != recordTypeApplicationData:
		// After the handshake every record is protected; a
		// change_cipher_spec is only tolerated before the peer's
		// Finished (section 5).
		return 0, alertUnexpectedMessage
	case n > maxCiphertext13:
		return 0, alertRecordOverflow
	case n < 1+aeadTagLen:
		return 0, alertBadRecordMAC
	}
	return n, 0
}

// open decrypts the record body (in place) whose header is hdr and
// returns the inner content type and the content, padding removed
// (RFC 8446 section 5.2 and 5.4), or the alert to send.
func (r *records13) open(hdr, body []byte) (typ uint8, content []byte, alert uint8) {
	nonce, ok := r.in.nextNonce()
	if !ok {
		return 0, nil, alertInternalError
	}
	plain, err := r.in.aead.Open(body[:0], nonce, body, hdr)
	if err != nil {
		return 0, nil, alertBadRecordMAC
	}
	if len(plain) > maxInnerPlaintext {
		return 0, nil, alertRecordOverflow
	}
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, alertUnexpectedMessage // no non-zero type byte
	}
	return plain[i], plain[:i], 0
}

// Outcomes of records13.handle besides an alert.
const (
	gotData    = iota // content is application data
	gotControl        // the record was handled; nothing for the caller
	gotEOF            // close_notify
)

// handle acts on a decrypted record. It returns gotData for application
// data, gotEOF for close_notify and gotControl for anything else it
// accepted; err is an AlertError (Remote for the peer's fatal alert; else
// the alert to send).
func (r *records13) handle(typ uint8, content []byte) (int, error) {
	switch typ {
	case recordTypeApplicationData:
		if len(content) > 0 {
			r.useless = 0
			return gotData, nil
		}
		return r.useless1()
	case recordTypeAlert:
		if len(content) != 2 {
			return 0, AlertError{Description: alertDecodeError}
		}
		switch content[1] {
		case alertCloseNotify:
			return gotEOF, nil
		case alertUserCanceled:
			// Followed by close_notify (RFC 8446 section 6.1).
			return r.useless1()
		}
		// Every other alert is fatal in TLS 1.3, whatever its level
		// (section 6).
		return 0, AlertError{Description: content[1], Remote: true}
	case recordTypeHandshake:
		if err := r.keyUpdate(content); err != nil {
			return 0, err
		}
		return r.useless1()
	}
	return 0, AlertError{Description: alertUnexpectedMessage}
}

func (r *records13) useless1() (int, error) {
	if r.useless++; r.useless > maxUselessRecords {
		return 0, AlertError{Description: alertUnexpectedMessage}
	}
	return gotControl, nil
}

// keyUpdate handles the post-handshake messages of a record: KeyUpdates
// only (RFC 8446 section 4.6.3).
func (r *records13) keyUpdate(msgs []byte) error {
	for len(msgs) > 0 {
		if len(msgs) < 4 {
			return AlertError{Description: alertUnexpectedMessage} // split across records
		}
		n := int(msgs[1])<<16 | int(msgs[2])<<8 | int(msgs[3])
		switch {
		case msgs[0] != handshakeTypeKeyUpdate:
			return AlertError{Description: alertUnexpectedMessage}
		case n != 1:
			return AlertError{Description: alertDecodeError}
		case len(msgs) < 5:
			return AlertError{Description: alertUnexpectedMessage}
		case msgs[4] > 1: // update_not_requested(0), update_requested(1)
			return AlertError{Description: alertIllegalParameter}
		case len(msgs) > 5:
			// The key changes after this message, so it must end the
			// record (section 5.1).
			return AlertError{Description: alertUnexpectedMessage}
		}
		if msgs[4] == 1 {
			r.updateOut.Store(true)
		}
		if err := r.in.update(); err != nil {
			return AlertError{Description: alertInternalError}
		}
		msgs = msgs[5:]
	}
	return nil
}

// beginRecord appends a record header to dst; endRecord seals what was
// appended after it.
func beginRecord(dst []byte) ([]byte, int) {
	// legacy_record_version 0x0303 (RFC 8446 section 5.1); the length is
	// filled in by endRecord.
	return append(dst, recordTypeApplicationData, 3, 3, 0, 0), len(dst)
}

// endRecord appends the inner type to the record that starts at start in
// dst and encrypts it in place (RFC 8446 section 5.2). The buffer grows
// only if it has no room for the tag.
func (r *records13) endRecord(dst []byte, start int, typ uint8) ([]byte, error) {
	return r.sealRecord(append(dst, typ), start)
}

// sealRecord encrypts in place the inner plaintext (content, type and
// any padding) of the record that starts at start in dst.
func (r *records13) sealRecord(dst []byte, start int) ([]byte, error) {
	dst = slices.Grow(dst, aeadTagLen)
	body := dst[start+recordHeaderLen:]
	n := len(body) + aeadTagLen
	dst[start+3], dst[start+4] = byte(n>>8), byte(n)
	nonce, ok := r.out.nextNonce()
	if !ok {
		return dst[:start], AlertError{Description: alertInternalError}
	}
	sealed := r.out.aead.Seal(body[:0], nonce, body, dst[start:start+recordHeaderLen])
	return dst[:start+recordHeaderLen+len(sealed)], nil
}

// appendRecord appends one protected record of inner type typ.
func (r *records13) appendRecord(dst []byte, typ uint8, content ...byte) ([]byte, error) {
	dst, start := beginRecord(dst)
	dst = append(dst, content...)
	return r.endRecord(dst, start, typ)
}

// appendAlert appends an alert record.
func (r *records13) appendAlert(dst []byte, level, desc uint8) ([]byte, error) {
	return r.appendRecord(dst, recordTypeAlert, level, desc)
}

// appendKeyUpdate answers the peer's update_requested, if it sent one:
// a KeyUpdate of our own, then the new write key (RFC 8446 section 4.6.3).
// Several requests received while we were silent get one answer.
func (r *records13) appendKeyUpdate(dst []byte) ([]byte, error) {
	if !r.updateOut.Load() {
		return dst, nil
	}
	r.updateOut.Store(false)
	dst, err := r.appendRecord(dst, recordTypeHandshake, handshakeTypeKeyUpdate, 0, 0, 1, 0)
	if err != nil {
		return dst, err
	}
	if err := r.out.update(); err != nil {
		return dst, AlertError{Description: alertInternalError}
	}
	return dst, nil
}

// sealer appends application data to buf as records of up to 2^14 bytes
// of plaintext, coalescing small writes (RFC 8446 section 5.1).
type sealer struct {
	r    *records13
	buf  []byte
	open int // start of the record being filled, -1 if none
	err  error
}

func (s *sealer) write(p []byte) {
	for len(p) > 0 && s.err == nil {
		if s.open < 0 {
			s.buf, s.open = beginRecord(s.buf)
		}
		filled := len(s.buf) - s.open - recordHeaderLen
		n := min(maxRecordPlaintext-filled, len(p))
		s.buf = append(s.buf, p[:n]...)
		p = p[n:]
		if filled+n == maxRecordPlaintext {
			s.close()
		}
	}
}

// close seals the record being filled.
func (s *sealer) close() {
	if s.open >= 0 && s.err == nil {
		s.buf, s.err = s.r.endRecord(s.buf, s.open, recordTypeApplicationData)
	}
	s.open = -1
}
