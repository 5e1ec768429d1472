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
# shellcheck source=lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
apt_install_quiet install-dovecot "mail tests against Dovecot will skip" dovecot "${need[@]}" || exit 0
/usr/sbin/dovecot --version 2>&1 | head -1
