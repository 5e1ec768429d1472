#!/usr/bin/env python3
"""A real mail client for frontdoor's mail tests: Python's imaplib and
poplib drive the gateway. Usage: mailclient.py SCENARIO HOST PORT MODE USER
PASSWORD [ARG], MODE one of plain, starttls, tls. Prints what it saw; exits
non-zero on anything unexpected. TLS certificates are not verified (the
gateway's is a self-signed one made for the test run)."""
import hashlib
import imaplib
import poplib
import socket
import ssl
import sys
import time

scenario, host, port, mode, user, password = sys.argv[1:7]
arg = sys.argv[7] if len(sys.argv) > 7 else ""
port = int(port)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
TIMEOUT = 20


def imap():
    if mode == "tls":
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=TIMEOUT)
    else:
        m = imaplib.IMAP4(host, port, timeout=TIMEOUT)
        if mode == "starttls":
            m.starttls(ssl_context=ctx)
    return m


def pop3():
    if mode == "tls":
        p = poplib.POP3_SSL(host, port, context=ctx, timeout=TIMEOUT)
    else:
        p = poplib.POP3(host, port, timeout=TIMEOUT)
        if mode == "starttls":
            p.stls(context=ctx)
    return p


def message(size):
    head = b"From: test@example.test\r\nSubject: frontdoor test\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n"
    body = line * (max(size - len(head), 0) // len(line) + 1)
    return head + body[: max(size - len(head), 0)]


def idle(m):
    # imaplib has no IDLE before Python 3.14: RFC 2177 by hand.
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    if not line.startswith(b"+"):
        raise SystemExit("IDLE not accepted: %r" % line)
    time.sleep(0.2)
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            if b" OK" not in line:
                raise SystemExit("IDLE ended badly: %r" % line)
            return


if scenario == "imap-session":
    size = int(arg or "1048576")
    m = imap()
    caps = m.capabilities
    typ, data = m.login(user, password)
    print("login", typ, data[0].decode())
    typ, data = m.select("INBOX")
    before = int(data[0])
    msg = message(size)
    typ, data = m.append("INBOX", None, None, msg)
    if typ != "OK":
        raise SystemExit("append: %s %r" % (typ, data))
    typ, data = m.select("INBOX")
    count = int(data[0])
    if count != before + 1:
        raise SystemExit("expected %d messages, got %d" % (before + 1, count))
    typ, data = m.fetch(str(count), "(BODY.PEEK[])")
    got = data[0][1]
    if hashlib.sha256(got).digest() != hashlib.sha256(msg).digest():
        raise SystemExit("fetched %d bytes, not the %d appended" % (len(got), len(msg)))
    idle(m)
    typ, data = m.noop()
    typ, data = m.logout()
    print("ok messages=%d fetched=%d" % (count, len(got)))
elif scenario == "imap-fetch":
    # Fetch the newest message ARG times (throughput); prints the bytes.
    m = imap()
    m.login(user, password)
    typ, data = m.select("INBOX", readonly=True)
    count = int(data[0])
    total = 0
    for _ in range(int(arg or "1")):
        typ, data = m.fetch(str(count), "(BODY.PEEK[])")
        total += len(data[0][1])
    m.logout()
    print("ok fetched=%d" % total)
elif scenario == "imap-login-fail":
    m = imap()
    try:
        m.login(user, password)
    except imaplib.IMAP4.error as e:
        print("refused", e)
        sys.exit(0)
    raise SystemExit("login with a wrong password succeeded")
elif scenario == "imap-plain-refused":
    m = imap()
    caps = m.capabilities
    if "LOGINDISABLED" not in caps or "STARTTLS" not in caps:
        raise SystemExit("capabilities before TLS: %r" % (caps,))
    try:
        m.login(user, password)
    except imaplib.IMAP4.error as e:
        print("refused", e)
        sys.exit(0)
    raise SystemExit("plaintext login before STARTTLS succeeded")
elif scenario == "imap-hold":
    # Log in, report, then wait for the server to end the session.
    m = imap()
    m.login(user, password)
    m.select("INBOX")
    print("ready", flush=True)
    m.sock.settimeout(TIMEOUT)
    while True:
        line = m.readline()
        if not line:
            print("closed")
            break
        print("got", line.decode().strip(), flush=True)
        if line.startswith(b"* BYE"):
            break
elif scenario == "pop3-session":
    p = pop3()
    p.user(user)
    resp = p.pass_(password)
    print("login", resp.decode())
    n, size = p.stat()
    if n > 0:
        resp, lines, octets = p.retr(n)
        print("retr", n, octets)
    p.quit()
    print("ok messages=%d" % n)
elif scenario == "pop3-login-fail":
    p = pop3()
    try:
        p.user(user)
        p.pass_(password)
    except poplib.error_proto as e:
        print("refused", e)
        sys.exit(0)
    raise SystemExit("POP3 login with a wrong password succeeded")
elif scenario == "pop3-plain-refused":
    p = pop3()
    caps = p.capa()
    if "STLS" not in caps or "USER" in caps:
        raise SystemExit("capabilities before TLS: %r" % (caps,))
    try:
        p.user(user)
    except poplib.error_proto as e:
        print("refused", e)
        sys.exit(0)
    raise SystemExit("USER accepted before STLS")
else:
    raise SystemExit("unknown scenario " + scenario)
