# Sourced by the scripts/install-*.sh that `make test` runs: installs Debian
# packages for a test's own servers without letting the packages start their
# system services (those would hold the well-known ports and want files the
# tests do not write). Never fails: the caller's tests skip, saying why.

# apt_install_quiet TAG SKIPPED "SERVICE..." PACKAGE...
#   TAG names the caller in messages, SKIPPED says what skips when the
#   install cannot happen, SERVICE... are the packages' services to stop and
#   disable should they have started anyway. Returns 1 (after saying why)
#   when nothing could be installed, 0 otherwise.
apt_install_quiet() {
	local tag=$1 skipped=$2 services=$3
	shift 3
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "$tag: no apt-get; $skipped" >&2
		return 1
	fi
	echo "$tag: installing $* from Debian"
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "$tag: not root and no sudo; $skipped" >&2
			return 1
		fi
		sudo=sudo
	fi
	# invoke-rc.d asks policy-rc.d whether it may start a service; exit
	# 101 means no. Only a policy-rc.d made here is removed again.
	local policy=/usr/sbin/policy-rc.d made_policy="" ok=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		made_policy=1
	fi
	$sudo apt-get update -y -qq || true
	if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
		echo "$tag: apt-get install failed; $skipped" >&2
		ok=1
	fi
	[ -n "$made_policy" ] && $sudo rm -f "$policy"
	local svc
	for svc in $services; do
		if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			$sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$svc" ]; then
			$sudo "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
		fi
	done
	return $ok
}
