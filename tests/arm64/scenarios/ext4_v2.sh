# V2 (block-layer tracker) round trip on ext4, loop and ext4 loaded from the
# arm64 image package. The session, the image as the workload left it and the
# pre-mount sha256 are kept in $RESULTS/keep/ for the host: the amd64 CLI must
# verify and restore the arm64-written store bit-exact (run.py,
# host/store_format_amd64).
. tests/arm64/lib.sh
load_bdsnap
ext4_roundtrip /tmp/ext4.img --tracker bio
[ "$(meta "$SESSION" tracker)" = bio ] || fail "tracker is not bio"
[ "$(meta "$SESSION" ordered)" = 0 ] || fail "ordered is not 0"

step "keep the session for the amd64 host check"
keep=$RESULTS/keep
rm -rf "$keep"
mkdir -p "$keep/store"
cp -r "$SESSION" "$keep/store/"
cp /tmp/ext4.img "$keep/after.img"
echo "$BEFORE" >"$keep/before.sha256"
"$BDSNAP" show "$SESSION" --json >"$keep/show-arm64.json"

assert_restores "$SESSION" /tmp/ext4.img
deactivate /tmp/ext4.img
