# shellcheck shell=bash
# Shared by deploy/quickstart and tests/run: package installation and the build.
# Source this file; it defines functions only (and LSC_ROOT, the clone's root).

LSC_ROOT=${LSC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

lsc_say() { printf '%s\n' "$*" >&2; }
lsc_die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# The package names from deploy/packages, one a line.
lsc_packages() {
	sed -e 's/#.*//' "$LSC_ROOT/deploy/packages" | tr -s ' \t' '\n' | sed '/^$/d'
}

# The packages of deploy/packages that are not installed, one a line.
lsc_missing_packages() {
	local -a want
	mapfile -t want < <(lsc_packages)
	# dpkg-query exits non-zero when it does not know a name; its stdout still
	# lists every package it knows, so compare the lists instead.
	local installed
	installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${want[@]}" 2>/dev/null |
		awk '$2 == "ii" { print $1 }')
	local p
	for p in "${want[@]}"; do
		grep -qxF -- "$p" <<<"$installed" || echo "$p"
	done
}

# Installs what deploy/packages lists and is missing; nothing when all is there.
# Needs root (only when something is missing). Never reads stdin.
lsc_install_packages() {
	local -a missing
	mapfile -t missing < <(lsc_missing_packages)
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		lsc_say "missing Debian packages: ${missing[*]}"
		lsc_say "run as root, or install them: apt-get install ${missing[*]}"
		return 1
	fi
	lsc_say "installing ${#missing[@]} Debian packages: ${missing[*]}"
	# postgresql's postinst may start Debian's own cluster on 5432: we leave it
	# alone and never use it (our clusters are private, on their own ports).
	local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
	"${apt[@]}" update -qq </dev/null || { lsc_say "apt-get update failed"; return 1; }
	"${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null ||
		{ lsc_say "apt-get install failed: ${missing[*]}"; return 1; }
	mapfile -t missing < <(lsc_missing_packages)
	if [ "${#missing[@]}" -ne 0 ]; then
		lsc_say "still missing after apt-get install: ${missing[*]}"
		return 1
	fi
}

# lsc_build [CMAKE_ARGS...]: configures and builds into $LSC_BUILD_DIR (default
# build, relative to the clone) with warnings as errors.
lsc_build() {
	local dir=${LSC_BUILD_DIR:-build}
	case $dir in /*) ;; *) dir=$LSC_ROOT/$dir ;; esac
	cmake -S "$LSC_ROOT" -B "$dir" -DLSC_WERROR=ON "$@" >/dev/null ||
		{ lsc_say "cmake configure failed ($dir)"; return 1; }
	cmake --build "$dir" -j"$(nproc)" ||
		{ lsc_say "build failed ($dir)"; return 1; }
}
