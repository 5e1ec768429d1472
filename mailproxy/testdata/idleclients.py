#!/usr/bin/env python3
"""Holds N idle IMAP connections to the proxy, for TestIdleMemory.
Usage: idleclients.py N MODE HOST PORT [STUBPORT]. MODE: greeting (connect,
read the greeting), tls (implicit TLS, read the greeting), login and
login-tls (also LOGIN alice password; STUBPORT is where this process serves
the stub IMAP server the proxy logs in to). Prints "ready N" once every
connection is in place, then waits for stdin to close."""
import asyncio
import resource
import ssl
import sys

n, mode, host, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
stub_port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []


async def stub(reader, writer):
    writer.write(b"* OK [CAPABILITY IMAP4rev1] stub\r\n")
    while True:
        line = await reader.readline()
        if not line:
            return
        if b" LOGIN " in line or b" AUTHENTICATE " in line:
            writer.write(b"fd1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
        held.append(writer)


async def one(ctx):
    r, w = await asyncio.open_connection(host, port, ssl=ctx, limit=4096)
    line = await r.readline()
    if not line.startswith(b"* OK"):
        raise SystemExit("greeting: %r" % line)
    if mode.startswith("login"):
        w.write(b"a LOGIN alice password\r\n")
        while True:
            line = await r.readline()
            if line.startswith(b"a "):
                if not line.startswith(b"a OK"):
                    raise SystemExit("login: %r" % line)
                break
    held.append((r, w))


async def main():
    if stub_port:
        await asyncio.start_server(stub, "127.0.0.1", stub_port, backlog=4096)
    ctx = None
    if mode in ("tls", "login-tls"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(64)

    async def limited():
        async with sem:
            await one(ctx)

    await asyncio.gather(*(limited() for _ in range(n)))
    print("ready", len([h for h in held if isinstance(h, tuple)]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main())
