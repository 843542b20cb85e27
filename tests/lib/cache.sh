# shellcheck shell=bash
# A cache directory outside the clone (under $BDSNAP_CACHE, default
# /var/cache/bdsnap) that one process fills once: sourced by
# tests/vm/debug_kernel.sh and tests/arm64/deps.sh, which define say() and SUDO.
# The filler writes DIR/complete last; its presence means the cache is usable.

# Exit 0, printing DIR, when DIR is complete.
cache_exit_if_complete() {
	if [ -e "$1/complete" ]; then
		say "cached, nothing to do"
		echo "$1"
		exit 0
	fi
}

# cache_newest_complete DIR...: print the most recent complete one of DIRs
# (a glob's matches); return 1 when none is.
cache_newest_complete() {
	local d
	for d in $(ls -dt "$@" 2>/dev/null); do
		if [ -e "$d/complete" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# cache_enter DIR: return holding DIR's lock (fd 9) with DIR incomplete, or
# exit 0 as above, also when another process completed it while we waited.
cache_enter() {
	local dir=$1 root
	root=$(dirname "$dir")
	cache_exit_if_complete "$dir"
	$SUDO mkdir -p "$root"
	[ -w "$root" ] || $SUDO chown "$(id -u):$(id -g)" "$root"
	mkdir -p "$dir"
	exec 9>"$dir/.lock"
	if ! flock -n 9; then
		say "another process is filling $dir; waiting for it"
		flock 9
	fi
	cache_exit_if_complete "$dir"
}
