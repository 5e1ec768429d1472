#!/usr/bin/env bash
# make tlscheck: run testssl.sh against a local TLS listener whose
# certificate comes from a throwaway test CA, and fail on any CRITICAL, HIGH
# or MEDIUM finding. Installs testssl.sh and jq from Debian when missing.
set -euo pipefail
bin=${1:-bin/frontdoor}
need=()
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || need+=(testssl.sh)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
	echo "tlscheck: installing ${need[*]}"
	sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
	$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
testssl=$(command -v testssl || command -v testssl.sh)

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A test CA and a leaf for localhost, both made here and thrown away.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 730 \
	-subj "/CN=frontdoor tlscheck CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-subj "/CN=localhost" -keyout "$work/key.pem" -out "$work/leaf.csr" 2>/dev/null
# A revocation pointer as a public CA's leaf has (testssl rates its absence
# HIGH); nothing fetches it here.
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\ncrlDistributionPoints=URI:http://ca.example.test/frontdoor-test.crl\n' >"$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
	-days 365 -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null

port=$((20000 + RANDOM % 20000))
mport=$((port + 1))
cat >"$work/frontdoor.toml" <<TOML
directory = "directory.toml"
[[listener]]
name = "https"
address = "127.0.0.1:$port"
tls = true
hsts = "max-age=31536000; includeSubDomains"
certificates = [{ cert = "cert.pem", key = "key.pem" }]
[[protocol]]
name = "owa"
path_prefix = "/owa"
backend_port = $mport
TOML
cat >"$work/directory.toml" <<TOML
[[site]]
name = "site-a"
external_url = "https://mail-a.example.test"
[[server]]
name = "mbx1"
address = "127.0.0.1"
site = "site-a"
[[database]]
name = "DB01"
active = "mbx1"
[[user]]
login = "alice"
address = "alice@example.test"
database = "DB01"
TOML

"$bin" mailboxd --listen "127.0.0.1:$mport" --name mbx1 >"$work/mailboxd.log" 2>&1 & pids+=($!)
"$bin" run --config "$work/frontdoor.toml" >"$work/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 1 50); do
	curl -sk --max-time 1 -o /dev/null "https://127.0.0.1:$port/owa/u/alice@example.test/" && break
	sleep 0.2
done

echo "tlscheck: testssl against https://localhost:$port (test CA)"
set +e
"$testssl" --quiet --color 0 --warnings off --sneaky --add-ca "$work/ca.pem" \
	--ip 127.0.0.1 --jsonfile "$work/testssl.json" "https://localhost:$port/owa/u/alice@example.test/" >"$work/testssl.txt" 2>&1
set -e
if [ ! -s "$work/testssl.json" ]; then
	cat "$work/testssl.txt" "$work/gateway.log"
	echo "tlscheck: testssl produced no report" >&2
	exit 1
fi
findings=$(jq -r '.[] | select(.severity=="CRITICAL" or .severity=="HIGH" or .severity=="MEDIUM") | "\(.severity)\t\(.id)\t\(.finding)"' "$work/testssl.json")
jq -r '.[] | select(.severity=="LOW" or .severity=="WARN") | "note: \(.severity)\t\(.id)\t\(.finding)"' "$work/testssl.json"
if [ -n "$findings" ]; then
	echo "$findings"
	echo "tlscheck: FAILED: findings of MEDIUM severity or worse" >&2
	exit 1
fi
echo "tlscheck: no CRITICAL, HIGH or MEDIUM findings"
