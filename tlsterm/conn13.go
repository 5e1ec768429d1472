package tlsterm

// The loop side of tlsterm's own TLS 1.3 record layer (record13.go): how a
// Conn with rl set reads, writes and closes.

// fillRecords is fill for a connection on the own record layer: it reads
// whole records from the wire into the plaintext buffer and decrypts them
// there in place, until the wire holds no whole record, the plaintext
// bound is reached, or close_notify or an error ends the input.
func (c *Conn) fillRecords() {
	r := c.rl
	bound := c.t.maxPlain
	for c.err == nil && c.flags&(fPeerEOF|fClosed) == 0 {
		if c.pw-c.pr >= bound {
			c.flags |= fMore
			break
		}
		if r.nhdr < recordHeaderLen {
			r.nhdr += uint8(c.readCipher(r.hdr[r.nhdr:]))
			if r.nhdr < recordHeaderLen {
				c.flags &^= fMore
				break
			}
		}
		n, alert := checkHeader(&r.hdr)
		if alert != 0 {
			c.recordFailed(AlertError{Description: alert})
			break
		}
		if len(c.in)+c.gc.InboundBuffered() < n {
			c.flags &^= fMore // the rest of the record is still on its way
			break
		}
		if c.pw > c.pr && c.pw-c.pr+n-aeadTagLen-1 > bound {
			// The record's plaintext might not fit under the bound:
			// wait for the caller to consume. A record larger than the
			// bound (below 2^14 bytes) is taken when nothing waits.
			c.flags |= fMore
			break
		}
		body := c.plainRoom(n)
		c.readCipher(body)
		r.nhdr = 0
		typ, content, alert := r.open(r.hdr[:], body)
		if alert != 0 {
			c.recordFailed(AlertError{Description: alert})
			break
		}
		got, err := r.handle(typ, content)
		switch {
		case err != nil:
			c.recordFailed(err)
		case got == gotData:
			c.pw += len(content) // decrypted where it lies: at pbuf[pw:]
		case got == gotEOF:
			c.flags |= fPeerEOF // close_notify (RFC 8446 section 6.1)
			c.flags &^= fMore
		case typ == recordTypeHandshake:
			c.t.stats.KeyUpdates.Add(1)
		}
	}
	if c.pbuf != nil && c.pw == c.pr {
		putPlain(c.pbuf)
		c.pbuf, c.pr, c.pw = nil, 0, 0
	}
}

// readCipher fills p with ciphertext: first what the handshake goroutine
// left, then gnet's buffer (whose Read consumes what it copies). It
// returns how many bytes it copied.
func (c *Conn) readCipher(p []byte) int {
	n := 0
	if len(c.in) > 0 {
		n = copy(p, c.in)
		if c.in = c.in[n:]; len(c.in) == 0 {
			c.in = nil
		}
	}
	if n < len(p) {
		m, _ := c.gc.Read(p[n:])
		n += m
	}
	return n
}

// plainRoom returns the n bytes after pw in the plaintext buffer, making
// room first: moving the unread plaintext to the front, or taking a larger
// buffer. A record is read there and decrypted in place, so its plaintext
// lands where the caller Peeks it.
func (c *Conn) plainRoom(n int) []byte {
	if c.pbuf == nil {
		c.pbuf, c.pr, c.pw = getPlain(plainClass(n)), 0, 0
	}
	b := *c.pbuf
	if len(b)-c.pw < n {
		if c.pr > 0 {
			c.pw = copy(b, b[c.pr:c.pw])
			c.pr = 0
		}
		if len(b)-c.pw < n {
			nb := getPlain(plainClass(c.pw + n))
			copy(*nb, b[:c.pw])
			putPlain(c.pbuf)
			c.pbuf, b = nb, *nb
		}
	}
	return b[c.pw : c.pw+n]
}

// recordFailed ends the input with err: for an alert of ours, the alert
// is sent (RFC 8446 section 6.2: a fatal alert, then the connection is
// closed, which the caller of OnTraffic or Peek does).
func (c *Conn) recordFailed(err error) {
	c.err = err
	c.t.stats.RecordAlerts.Add(1)
	c.flags &^= fMore
	if ae, ok := err.(AlertError); ok && !ae.Remote && c.flags&(fClosed|fWriteShut) == 0 {
		buf := getScratch()
		if b, aerr := c.rl.appendAlert(*buf, alertLevelFatal, ae.Description); aerr == nil {
			_, _ = c.gc.Write(b)
		}
		putScratch(buf)
	}
	c.t.log.Debug("tls record refused", "remote", addrString(c.gc.RemoteAddr()), "err", err)
}

// seal encrypts p, or the buffers bs, into records collected in c.wbuf
// (between beginWrite and endWrite), handing them to gnet every
// writeFlushAt bytes. A KeyUpdate the peer asked for goes first.
func (c *Conn) seal(p []byte, bs [][]byte) (int, error) {
	buf, err := c.rl.appendKeyUpdate(*c.wbuf)
	s := sealer{r: c.rl, buf: buf, open: -1, err: err}
	total := 0
	put := func(b []byte) {
		for len(b) > 0 && s.err == nil {
			n := min(len(b), writeFlushAt)
			s.write(b[:n])
			b = b[n:]
			total += n
			if len(s.buf) >= writeFlushAt && s.err == nil {
				s.close()
				if _, err := c.gc.Write(s.buf); err != nil {
					s.err = err
				}
				s.buf = s.buf[:0]
			}
		}
	}
	put(p)
	for _, b := range bs {
		put(b)
	}
	s.close()
	*c.wbuf = s.buf
	return total, s.err
}

// closeNotify appends close_notify (RFC 8446 section 6.1) to the records
// of the write in progress; no write may follow.
func (c *Conn) closeNotify() error {
	c.flags |= fWriteShut
	if c.rl == nil {
		return c.tc.CloseWrite()
	}
	b, err := c.rl.appendAlert(*c.wbuf, alertLevelWarning, alertCloseNotify)
	*c.wbuf = b
	return err
}

// forgetSecrets removes a failed handshake's secrets from the key log.
func (h *handshake) forgetSecrets(t *Terminator) {
	if random, ok := clientRandom(h.hello[:h.nhello]); ok {
		_, _, _ = t.secrets.take(random)
	}
}
