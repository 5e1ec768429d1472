#!/usr/bin/env bash
# Development run: two reference mailbox servers and the gateway on its
# embedded default configuration (examples/frontdoor.toml). Ctrl-C stops all.
set -euo pipefail
bin=${1:-bin/frontdoor}
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$bin" mailboxd --listen 127.0.0.1:18081 --name mbx1 & pids+=($!)
"$bin" mailboxd --listen 127.0.0.1:18082 --name mbx2 & pids+=($!)
echo "mailbox servers: mbx1 127.0.0.1:18081, mbx2 127.0.0.1:18082"
echo "gateway: http://127.0.0.1:8080  (try: curl -s -H 'X-AnchorMailbox: alice@example.test' http://127.0.0.1:8080/owa/)"
"$bin" run & pids+=($!)
wait -n "${pids[@]}"
