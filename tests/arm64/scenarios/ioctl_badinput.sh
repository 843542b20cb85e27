# /dev/snap with bad input on arm64: the uapi structs from a C program
# (bdsnap-ioctl-test, the cases of tests/scenarios/test_badinput.py) and the
# CLI's answers; no kernel warning (the runner checks the log).
. tests/arm64/lib.sh

step "insmod without a password is refused"
if insmod "$OUT/bdsnap.ko" 2>/dev/null; then
	rmmod bdsnap
	fail "bdsnap.ko loaded without a password"
fi
dmesg | tail -n 5 | grep -q password || fail "no message naming the password"

load_bdsnap
img=/tmp/badinput.img
truncate -s 16M "$img"
step "ioctls (bdsnap-ioctl-test)"
"$OUT/bdsnap-ioctl-test" "$PASSWORD" "$img"

step "the CLI"
if out=$(echo wrong | "$BDSNAP" activate "$img" --password-fd 0 2>&1); then
	fail "activated with a wrong password"
fi
echo "$out"
echo "$out" | grep -q "wrong password" || fail "CLI does not say 'wrong password'"
if out=$(echo "$PASSWORD" | "$BDSNAP" activate /nonexistent/image --password-fd 0 2>&1); then
	fail "activated a path that does not exist"
fi
echo "$out"
if out=$(echo "$PASSWORD" | "$BDSNAP" activate "$img" --via syscall --password-fd 0 2>&1); then
	fail "--via syscall succeeded on arm64 (there is no syscall front-end off x86-64)"
fi
echo "$out"
"$BDSNAP" status | grep -qF "$img" && fail "a refused request left $img activated"
activate "$img" --tracker bio
"$BDSNAP" status | grep -F "$img" || fail "status does not show $img"
deactivate "$img"
"$BDSNAP" status | grep -qF "$img" && fail "$img still activated after deactivate"
"$BDSNAP" --version
echo "all bad-input checks passed"
