#!/bin/sh
# Inside the arm64 guest (tests/arm64/run.py): run the named scenarios of
# tests/arm64/scenarios/, each as its own shell, and append one verdict line
# per scenario to $BDSNAP_RESULTS/verdicts ("PASS arm64/NAME" or
# "FAIL arm64/NAME why"). A scenario passes when it exits 0 and leaves a clean
# kernel: bdsnap and singlefilefs unloaded, no loop device attached.
# Plain POSIX sh under busybox ash.
cd "$(dirname "$0")/../.." || exit 1
results=${BDSNAP_RESULTS:?}
failed=0
for name in "$@"; do
	echo "=== arm64/$name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	sh "tests/arm64/scenarios/$name.sh"
	rc=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	why=""
	[ $rc -ne 0 ] && why="exited $rc"
	left=$(grep -E '^(bdsnap|singlefilefs) ' /proc/modules | cut -d' ' -f1 | tr '\n' ' ')
	if [ -n "$left" ]; then
		why="${why:+$why; }left loaded: $left"
		for m in $left; do rmmod "$m"; done
	fi
	loops=$(losetup -a 2>/dev/null)
	[ -n "$loops" ] && why="${why:+$why; }loop devices left attached"
	secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
	if [ -z "$why" ]; then
		echo "PASS arm64/$name" >>"$results/verdicts"
		echo "=== PASS arm64/$name [$secs s]"
	else
		echo "FAIL arm64/$name $why" >>"$results/verdicts"
		echo "=== FAIL arm64/$name: $why [$secs s]"
		failed=$((failed + 1))
	fi
done
exit $failed
