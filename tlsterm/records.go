package tlsterm

// Record accounting for the reads the loop makes through crypto/tls.
//
// Every tls.Conn.Read that finds less than a whole record in crypto/tls's
// raw-input buffer fetches ciphertext through the wire, and crypto/tls
// allocates a small reader for each such fetch (Go 1.26, conn.go
// readFromUntil), whether the wire has bytes or not. Decrypting "until
// crypto/tls would block" therefore cost one fetch for the record and one
// more to learn that nothing followed it: two allocations per request.
//
// The wire sees every byte crypto/tls is given, so it can count the whole
// records among them (recordCursor), and Conn.fill can tell when another
// Read cannot return anything: the wire is empty and every whole record
// given to crypto/tls has been decrypted. Then fill stops without that last
// Read, and a keep-alive request over TLS costs the one fetch it needs.
// The count may only err high (a Read that decrypted a record carrying no
// application data, such as a KeyUpdate, RFC 8446 section 4.6.3, is not
// seen): fill then makes one Read too many, which would-block as before.

// recordHeaderLen is the length of a TLS record header: type, legacy
// version, length (RFC 8446 section 5.1; RFC 5246 section 6.2.1).
const recordHeaderLen = 5

// recordCursor follows the record framing of a ciphertext stream fed to it
// in pieces of any size.
// It is 8 bytes: it lives in every Conn.
type recordCursor struct {
	hdr  [recordHeaderLen]byte
	nhdr uint8  // header bytes seen of the current record
	left uint16 // body bytes still to come, once the header is complete
}

// advance moves the cursor over b, the next bytes of the stream, and
// returns how many records b completed.
func (r *recordCursor) advance(b []byte) (complete int) {
	for len(b) > 0 {
		if r.nhdr < recordHeaderLen {
			n := copy(r.hdr[r.nhdr:], b)
			r.nhdr += uint8(n)
			b = b[n:]
			if r.nhdr < recordHeaderLen {
				return complete
			}
			r.left = uint16(r.hdr[3])<<8 | uint16(r.hdr[4])
		}
		n := min(int(r.left), len(b))
		r.left -= uint16(n)
		b = b[n:]
		if r.left == 0 {
			r.nhdr = 0
			complete++
		}
	}
	return complete
}

// rest returns how many of next (the bytes that follow the stream seen so
// far) belong to the current record, or len(next) when its length is not
// known yet from what was seen and next.
func (r *recordCursor) rest(next []byte) int {
	left := int(r.left)
	if r.nhdr < recordHeaderLen {
		need := recordHeaderLen - int(r.nhdr)
		if len(next) < need {
			return len(next)
		}
		var hdr [recordHeaderLen]byte
		copy(hdr[:], r.hdr[:r.nhdr])
		copy(hdr[r.nhdr:], next[:need])
		left = need + (int(hdr[3])<<8 | int(hdr[4]))
	}
	return min(left, len(next))
}
