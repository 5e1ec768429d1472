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
# The packages ask for a default realm and KDC host names through debconf;
# the tests write their own krb5.conf, so the answers do not matter.
# shellcheck source=lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
apt_install_quiet install-krb5 "Kerberos tests will skip" "krb5-kdc krb5-admin-server" "${need[@]}" || exit 0
dpkg-query -W -f 'krb5-kdc ${Version}\n' krb5-kdc 2>/dev/null || true
