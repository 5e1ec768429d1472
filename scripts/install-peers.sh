#!/usr/bin/env bash
# make bench-peers: install nginx and haproxy from Debian when missing, for
# `frontdoor bench --peers nginx,haproxy`, and, optionally, the external load
# generators wrk and h2load (package nghttp2-client) that `--loadgen auto`
# uses when they are on PATH: if those cannot be installed, the bench runs
# without their rows, so their failure is a note, not an error. The bench
# starts each peer itself
# as a child process with a config rendered from bench/peers/; the packages'
# own services must not run (they would hold ports 80/443 and burn CPU the
# bench measures), so they are kept from starting during the install and
# stopped and disabled if they started anyway.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
optional=()
command -v wrk >/dev/null 2>&1 || optional+=(wrk)
command -v h2load >/dev/null 2>&1 || optional+=(nghttp2-client)
[ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

echo "install-peers: installing" "${need[@]}" "${optional[@]}" "from Debian"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
# invoke-rc.d asks policy-rc.d whether it may start a service; exit 101
# means no. Only a policy-rc.d this script created is removed again.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
	made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && $sudo rm -f "$policy"; return 0; }
trap cleanup EXIT
$sudo apt-get update -y -qq
if [ ${#need[@]} -gt 0 ] && ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
	# nginx-light is gone from newer Debian releases; nginx is the same
	# server with a few more modules.
	need=("${need[@]/nginx-light/nginx}")
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# One at a time, so that one missing package does not keep the other out.
for pkg in "${optional[@]}"; do
	if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; then
		echo "install-peers: optional $pkg not installed; frontdoor bench --loadgen auto runs without it" >&2
	fi
done
for svc in nginx haproxy; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		$sudo "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
done
/usr/sbin/nginx -v 2>&1
/usr/sbin/haproxy -v 2>&1 | head -1
if command -v wrk >/dev/null 2>&1; then wrk -v 2>&1 | head -1 || true; fi
if command -v h2load >/dev/null 2>&1; then h2load --version 2>&1 | head -1 || true; fi
