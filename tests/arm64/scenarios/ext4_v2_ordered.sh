# V2 round trip on ext4 in ordered mode (a held write is released only once its
# pre-image is durable in the store).
. tests/arm64/lib.sh
load_bdsnap
ext4_roundtrip /tmp/ext4-ordered.img --tracker bio --ordered
[ "$(meta "$SESSION" ordered)" = 1 ] || fail "ordered is not 1"
assert_restores "$SESSION" /tmp/ext4-ordered.img
deactivate /tmp/ext4-ordered.img
