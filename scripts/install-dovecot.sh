#!/usr/bin/env bash
# make test: install Dovecot (IMAP and POP3) from Debian when missing, for the
# mail tests in mailproxy/, which start their own Dovecot instances as child
# processes (`dovecot -F -c <temp dir>/dovecot.conf`) on loopback ports. The
# package's own service must not run (it would hold ports 143/110/993/995), so
# it is kept from starting during the install and stopped and disabled if it
# started anyway. Never fails `make test`: without Dovecot the tests that need
# it skip with a message saying so.
set -uo pipefail
have() { command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; }
need=()
have || need+=(dovecot-core)
[ -e /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-dovecot: no apt-get; mail tests against Dovecot will skip" >&2
	exit 0
fi

echo "install-dovecot: installing ${need[*]} from Debian"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-dovecot: not root and no sudo; mail tests against Dovecot will skip" >&2
		exit 0
	fi
	sudo=sudo
fi
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
$sudo apt-get update -y -qq || true
if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
	echo "install-dovecot: apt-get install failed; mail tests against Dovecot will skip" >&2
	exit 0
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	$sudo systemctl disable --now dovecot >/dev/null 2>&1 || true
elif [ -x /etc/init.d/dovecot ]; then
	$sudo /etc/init.d/dovecot stop >/dev/null 2>&1 || true
fi
/usr/sbin/dovecot --version 2>&1 | head -1
