#!/usr/bin/env bash
# run-pjdfstest.sh: run the pjdfstest POSIX suite (Rust rewrite, 0.2.2) in
# an overlay view and check the result.
#
#   tests/posix/run-pjdfstest.sh MOUNT_KIND
#
# MOUNT_KIND is one of
#   kernel          kernel overlayfs (mount -t overlay; extra options in
#                   PJDFSTEST_KERNEL_OPTS, default none)
#   fuse-overlayfs  fuse-overlayfs (apt-get install fuse-overlayfs)
#   vskel           ${VSKEL:-target/release/vskel} overlay -o lowerdir=..,upperdir=..,workdir=.. MNT
#                   (a relative VSKEL is taken from the repository root)
#
# What it does: installs pjdfstest into ${VSKEL_TOOLS:-/var/tmp/vskel-tools}
# if missing (cargo install pjdfstest --version 0.2.2 --locked, which needs
# libacl1-dev), makes the users pjdfstest switches to (`nobody` and `tests`),
# builds layers in a fresh directory (mode 0755, so those users reach the
# mount) on a disk filesystem (not tmpfs) under ${PJDFSTEST_DIR:-/var/tmp}:
# lower1 (holding the empty directory `t`), lower2, upper, work, mnt, other;
# mounts them; runs pjdfstest in MNT/t (a directory that comes from a lower
# layer, path kept short) with `other` as the second filesystem; unmounts and
# removes everything in an EXIT trap, on success or failure.
#
# Output: pjdfstest's own log goes to stderr as it runs; then the failing
# cases, one per line, and the summary line
#   pjdfstest: P passed, F failed
# (skipped cases are in neither number). PJDFSTEST_RESULTS=FILE gets every
# case as "NAME RESULT" (ok, FAILED, skipped, ...); PJDFSTEST_LOG=FILE gets
# pjdfstest's raw output, failure messages included.
#
# Exit status 0 when P >= ${PJDFSTEST_MIN_PASS:-0} and every failing case
# matches the extended regex ${PJDFSTEST_ALLOWED_FAIL_REGEX:-::char}; else 1
# (2 for a usage or setup error).
#
# Other knobs: PJDFSTEST_PATTERNS="chmod link" runs only cases whose names
# contain one of the words (pjdfstest's own filter).
#
# Why ::char is allowed: on any overlay a 0:0 character device is a
# whiteout, so the cases that mknod a char device with rdev 0 see it vanish.
set -euo pipefail

usage() {
    echo "usage: $0 kernel|fuse-overlayfs|vskel" >&2
    exit 2
}
(($# == 1)) || usage
kind=$1
case $kind in
kernel | fuse-overlayfs | vskel) ;;
*) usage ;;
esac
((EUID == 0)) || {
    echo "$0: needs root (mounts, user switching)" >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${VSKEL_TOOLS:-/var/tmp/vskel-tools}
pjdfstest=$tools/bin/pjdfstest
min_pass=${PJDFSTEST_MIN_PASS:-0}
allowed_fail=${PJDFSTEST_ALLOWED_FAIL_REGEX:-::char}

# --- pjdfstest itself and the users it needs --------------------------------
if [[ ! -x $pjdfstest ]]; then
    if ! dpkg -s libacl1-dev >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null
    fi
    echo "installing pjdfstest 0.2.2 into $tools" >&2
    cargo install pjdfstest --version 0.2.2 --locked --root "$tools" >&2
fi
getent passwd nobody >/dev/null || {
    echo "$0: user nobody is missing" >&2
    exit 2
}
# -U: a group of the same name, which pjdfstest looks up by the user's gid.
getent passwd tests >/dev/null || useradd -M -U -s /usr/sbin/nologin tests

case $kind in
fuse-overlayfs)
    command -v fuse-overlayfs >/dev/null || {
        echo "$0: fuse-overlayfs is missing (apt-get install fuse-overlayfs)" >&2
        exit 2
    }
    ;;
vskel)
    vskel=${VSKEL:-target/release/vskel}
    [[ $vskel == /* ]] || vskel=$repo/$vskel
    [[ -x $vskel ]] || {
        echo "$0: $vskel not found (cargo build --release, or set VSKEL)" >&2
        exit 2
    }
    ;;
esac

# --- layers -----------------------------------------------------------------
base=${PJDFSTEST_DIR:-/var/tmp}
fstype=$(stat -f -c %T "$base")
if [[ $fstype == tmpfs ]]; then
    echo "$0: $base is tmpfs; set PJDFSTEST_DIR to a directory on a disk filesystem" >&2
    exit 2
fi
dir=$(mktemp -d "$base/pjd.XXXXXX")
chmod 0755 "$dir" # the users pjdfstest switches to must reach MNT/t
mnt=$dir/mnt
mounted=

# shellcheck disable=SC2317  # called from the trap
cleanup() {
    local rc=$?
    if [[ -n $mounted ]]; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
    fi
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$dir"/{lower1/t,lower2,upper,work,mnt,other}
echo lower2 >"$dir/lower2/from-lower2"
chmod 0755 "$dir/lower1/t"
opts="lowerdir=$dir/lower1:$dir/lower2,upperdir=$dir/upper,workdir=$dir/work"

case $kind in
kernel)
    extra=${PJDFSTEST_KERNEL_OPTS:-}
    mount -t overlay overlay -o "$opts${extra:+,$extra}" "$mnt"
    ;;
fuse-overlayfs)
    fuse-overlayfs -o "$opts" "$mnt"
    ;;
vskel)
    "$vskel" overlay -o "$opts" "$mnt"
    ;;
esac
mounted=1
mountpoint -q "$mnt" || {
    echo "$0: $mnt is not a mount point after mounting" >&2
    exit 2
}
echo "mounted ($kind): $(grep " $mnt " /proc/mounts)" >&2

# The features a Linux disk filesystem has (pjdfstest's ci/linux-ext4.toml);
# naptime must exceed the timestamp granularity (ns on ext4 and overlays).
cat >"$dir/pjdfstest.toml" <<TOML
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
TOML

# --- run ----------------------------------------------------------------------
# -s: a directory on another filesystem (the ext4 beside the layers) for the
# two exdev_target cases (link and rename across filesystems give EXDEV).
raw=$dir/raw.log
read -r -a patterns <<<"${PJDFSTEST_PATTERNS:-}"
set +e
(cd "$mnt/t" && NO_COLOR=1 CLICOLOR=0 "$pjdfstest" -c "$dir/pjdfstest.toml" -p "$mnt/t" -s "$dir/other" \
    ${patterns[@]+"${patterns[@]}"}) >"$raw" 2>&1
pjd_rc=$?
set -e
# Colour codes off, in case the installed colored crate ignores NO_COLOR.
sed -i 's/\x1b\[[0-9;]*m//g' "$raw"
cat "$raw" >&2
[[ -z ${PJDFSTEST_LOG:-} ]] || cp "$raw" "$PJDFSTEST_LOG"

# Case lines are "NAME<spaces>RESULT"; failure details are tab-indented.
results=$dir/results.txt
sed -nE 's/^([^[:space:]]+)[[:space:]]+(ok|FAILED|skipped|failed as expected|PASSED UNEXPECTEDLY)$/\1 \2/p' \
    "$raw" >"$results"
[[ -z ${PJDFSTEST_RESULTS:-} ]] || cp "$results" "$PJDFSTEST_RESULTS"
if ! grep -q '^Summary:' "$raw"; then
    echo "$0: pjdfstest did not finish (exit $pjd_rc); see the log above" >&2
    exit 1
fi

passed=$(grep -cE ' (ok|failed as expected)$' "$results" || true)
failed=$(grep -cE ' (FAILED|PASSED UNEXPECTEDLY)$' "$results" || true)
mapfile -t failing < <(grep -E ' (FAILED|PASSED UNEXPECTEDLY)$' "$results" | cut -d' ' -f1)

status=0
if ((${#failing[@]})); then
    echo "failing cases ($kind):"
    printf '  %s\n' "${failing[@]}"
    mapfile -t unexpected < <(printf '%s\n' "${failing[@]}" | grep -Ev -- "$allowed_fail")
    if ((${#unexpected[@]})); then
        echo "failures not matching /$allowed_fail/:"
        printf '  %s\n' "${unexpected[@]}"
        status=1
    fi
fi
if ((passed < min_pass)); then
    echo "fewer passes than PJDFSTEST_MIN_PASS=$min_pass"
    status=1
fi
echo "pjdfstest: $passed passed, $failed failed"
exit "$status"
