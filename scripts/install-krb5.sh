#!/usr/bin/env bash
# make test: install MIT Kerberos (the KDC, kadmin.local, kdb5_util, kinit)
# from Debian when missing, for the Negotiate tests in kerberos/ and gateway/,
# which create a throwaway realm in a temp dir and run their own krb5kdc on a
# loopback port. The package's own KDC and kadmind services must not run (they
# would want /etc/krb5kdc and port 88), so they are kept from starting during
# the install and stopped and disabled if they started anyway. Never fails
# `make test`: without Kerberos the tests that need it skip with a message
# saying so.
set -uo pipefail
need=()
[ -x /usr/sbin/krb5kdc ] || need+=(krb5-kdc)
[ -x /usr/sbin/kadmin.local ] || need+=(krb5-admin-server)
command -v kinit >/dev/null 2>&1 || need+=(krb5-user)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-krb5: no apt-get; Kerberos tests will skip" >&2
	exit 0
fi

echo "install-krb5: installing ${need[*]} from Debian"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-krb5: not root and no sudo; Kerberos tests will skip" >&2
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
# The packages ask for a default realm and KDC host names through debconf;
# the tests write their own krb5.conf, so the answers do not matter.
$sudo apt-get update -y -qq || true
if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
	echo "install-krb5: apt-get install failed; Kerberos tests will skip" >&2
	exit 0
fi
for svc in krb5-kdc krb5-admin-server; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
	elif [ -x "/etc/init.d/$svc" ]; then
		$sudo "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
done
dpkg-query -W -f 'krb5-kdc ${Version}\n' krb5-kdc 2>/dev/null || true
