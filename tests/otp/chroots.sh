#!/bin/sh
# Build the Debian chroots that give tests OTP 27 (trixie) and OTP 29 (forky)
# next to the host's OTP 25 (docs/interop.md: OTP 26+ needs the distribution
# filter). Idempotent: a chroot that is
# already complete is skipped.
#
# usage: tests/otp/chroots.sh [27] [29]        (default: both)
# env:   CLOISTER_OTP_CACHE  cache dir (default /var/cache/cloister-otp)
#        MIRROR              Debian mirror (default: the host's apt sources)
#
# Needs root (debootstrap, chroot, mount). Prints the ready chroot dirs on
# stdout, one per line; progress goes to stderr.
set -eu

CACHE=${CLOISTER_OTP_CACHE:-/var/cache/cloister-otp}
VERSIONS=${*:-27 29}

log() { echo "chroots.sh: $*" >&2; }

# mirror: first Debian archive URI of the host's apt sources (deb822 or
# one-line format), skipping the security archive.
host_mirror() {
	{
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p'
	} | grep -E '^https?://.*/debian/?$' | grep -v security | head -n 1
}

MIRROR=${MIRROR:-$(host_mirror)}
if [ -z "$MIRROR" ]; then
	log "no Debian mirror found in the host's apt sources; set MIRROR"
	exit 2
fi

if [ "$(id -u)" != 0 ]; then
	log "must run as root"
	exit 2
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2
fi

mkdir -p "$CACHE"

build() {
	ver=$1
	case $ver in
	27) suite=trixie; script= ;;
	29) suite=forky; script=/usr/share/debootstrap/scripts/sid ;;
	*) log "unknown OTP version $ver (want 27 or 29)"; return 2 ;;
	esac
	dir=$CACHE/$ver
	if [ -f "$dir/.cloister-ok" ] && [ -x "$dir/usr/bin/erl" ]; then
		log "OTP $ver: present in $dir, skipped"
		echo "$dir"
		return 0
	fi
	tmp=$CACHE/$ver.build
	rm -rf "$tmp"
	log "OTP $ver: debootstrap $suite from $MIRROR into $tmp"
	# shellcheck disable=SC2086
	debootstrap --variant=minbase "$suite" "$tmp" "$MIRROR" $script >&2
	cp /etc/resolv.conf "$tmp/etc/resolv.conf"
	mount -t proc proc "$tmp/proc"
	# unmount /proc whatever happens inside
	set +e
	(
		set -e
		chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false update >&2
		chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends erlang-base elixir >&2
		chroot "$tmp" apt-get clean >&2
	)
	rc=$?
	umount "$tmp/proc"
	set -e
	if [ $rc -ne 0 ]; then
		log "OTP $ver: package install failed ($rc); left $tmp for inspection"
		return $rc
	fi
	rm -rf "$tmp"/var/lib/apt/lists/*
	rel=$(chroot "$tmp" erl -noshell -eval 'io:format("~s",[erlang:system_info(otp_release)]), halt().')
	if [ "$rel" != "$ver" ]; then
		log "OTP $ver: chroot has OTP $rel, not $ver"
		return 1
	fi
	touch "$tmp/.cloister-ok"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	log "OTP $ver: ready in $dir ($(du -sh "$dir" | cut -f1))"
	echo "$dir"
}

status=0
for v in $VERSIONS; do
	build "$v" || status=$?
done
exit $status
