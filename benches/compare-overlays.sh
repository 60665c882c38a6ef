#!/usr/bin/env bash
# compare-overlays.sh: paired timings of vskel's view (`vskel overlay`)
# against kernel overlayfs and fuse-overlayfs over the same layers, with the
# plain lower directory ("raw") as a fourth column where it makes sense.
#
#   benches/compare-overlays.sh [-n RUNS] [-s SETS] [-k KINDS]
#     -n RUNS   timed runs per measurement (default ${BENCH_RUNS:-3}); the
#               table shows the median
#     -s SETS   comma list of minbase,usr,io,write (default all)
#     -k KINDS  comma list of kernel,fuse-overlayfs,vskel,vskel-base
#               (default all that are there; vskel is skipped with a note
#               while `vskel overlay` does not exist; vskel-base only with
#               VSKEL_BASE)
#
# Environment: VSKEL (default target/release/vskel, relative to the repo),
# VSKEL_BASE (another vskel binary, e.g. built from an earlier commit: it
# becomes the column "base" and the ratio vskel/base, so a change is
# measured against its baseline in the same run),
# VSKEL_FIXTURES (default /var/tmp/vskel-fixtures), BENCH_DIR (where the
# scratch image or dir goes, default /var/tmp; not tmpfs),
# BENCH_SCRATCH_FS (loop (default): uppers on a fresh journaled ext4 in a
# loop-mounted ${BENCH_SCRATCH_SIZE:-8G} sparse image; dir: a plain dir),
# BENCH_KERNEL_OPTS (extra kernel overlay options, default none: the
# kernel's defaults), BENCH_USR_ENTRIES (default 130000).
# Needs root (mounts, drop_caches), python3, fuse-overlayfs for its column.
#
# Layer sets (each kind gets its own empty upper and work dir, on the
# scratch filesystem; the lowers stay where the fixtures are):
#   minbase  lowers = the debootstrap minbase tree
#            ($VSKEL_FIXTURES/rootfs-bookworm, made by
#            ../shared/fixtures/make-rootfs.sh if missing, ~6.7k entries)
#            used whole as one lower, plus an empty second lower
#   usr      lowers = $VSKEL_FIXTURES/usr-copy (cp -a /usr, made once; if
#            it has fewer than BENCH_USR_ENTRIES entries, copies of
#            usr-copy/share are added as usr-copy/share-dupN until it has
#            enough) plus an empty second lower
#   io       lowers = $VSKEL_FIXTURES/bench-io (big.bin: 1 GiB of
#            /dev/urandom; copyup/: 1,000 files of 4 KiB) plus an empty lower
#   write    lowers = the minbase tree plus an empty lower, as in minbase;
#            the workloads write into new directories of the mount, so the
#            lowers only matter for the lookups on the way
#
# Measurements (all kinds in alternating order in every run, raw included):
#   find warm     `find MNT | wc -l` after one untimed find (minbase, usr)
#   find cold     before each run: umount, sync, drop_caches (echo 3), mount;
#                 then `find MNT | wc -l` (minbase, usr)
#   stat warm     the "stat storm": a python3 loop doing lstat() on every
#                 path of a list (made once with find -print0 on the lower),
#                 after one untimed pass; python's start-up is not timed
#   rss           VmRSS of the FUSE server (the process whose command line
#                 has MNT as an argument) after the walks above (usr set);
#                 one sample, MiB; not applicable to kernel and raw
#   read 1 GiB    dd if=MNT/big.bin of=/dev/null bs=1M, warm (after one
#                 untimed read); raw = the lower file itself (io)
#   create 10k    python3: in a new dir, create 10,000 files of 64 bytes
#                 (open O_CREAT|O_EXCL, write, close) (io)
#   delete 10k    python3: unlink those 10,000 files (io)
#   copy-up 1000  fresh upper and mount, an untimed lstat of each file, then
#                 python3 appends one byte to each of the 1,000 lower files
#                 of copyup/ (io; raw appends to a scratch copy)
#   untar usr/share  in a new directory (made untimed, after an untimed
#                 `sync` so no run inherits the dirty pages of the one
#                 before), `tar -xf $VSKEL_FIXTURES/usr-share.tar` (a
#                 plain tar of the minbase tree's usr/share, ~4.3k entries,
#                 ~53 MB, made once); as root tar keeps owners, modes and
#                 mtimes, as a package install does (write; raw extracts
#                 into a directory on the scratch filesystem)
#   parallel create Px2k  P = 4 and P = 16 processes (python3, forked and
#                 ready before the clock starts), each creating 2,000 files
#                 of 64 bytes like create 10k in its own new directory;
#                 the time from the first process starting to the last one
#                 finishing; before each run (untimed) fresh layers and
#                 mount (raw: a fresh dir) and a `sync`, since all runs
#                 together need more inodes than the scratch ext4 has (write)
#
# FUSE requests per created file (fuse-overlayfs, vskel, vskel-base): one
# extra, untimed run of untar (write) and of create 10k (io) per FUSE kind
# with the kernel's fuse:fuse_request_send tracepoint enabled in a private
# tracefs instance (mounted on /sys/kernel/tracing if it is not), filtered
# in the kernel by `connection`, which is the FUSE superblock's dev_t
# (kernel encoding MKDEV = major << 20 | minor; FUSE mounts have major 0,
# so it is the minor of `stat -c %d MNT` and of /proc/self/mountinfo's
# 0:MINOR). The requests sent during the run (all of them: for untar also
# those for its directories, symlinks and hard links), divided by the
# regular files the workload creates (untar: the tarball's, 3,232 of its
# 4,263 entries; create 10k: 10,000), then the same per opcode (the top 8
# opcodes of the three kinds). FORGETs are queued apart from requests and
# are not counted. Without the tracepoint, or if the trace buffer
# overflowed, the counts are "-".
#
# Output: one row per measurement: medians in ms (RSS in MiB) for raw,
# kernel, fuse-overlayfs and vskel, the ratios vskel/kernel and
# fuse-overlayfs/kernel, and the issue's goal for vskel with a verdict for
# fuse-overlayfs and vskel. The goals: find warm <= 1.3x kernel, stat warm
# <= 1.2x kernel, find cold <= 1.5x kernel, read 1 GiB <= 1.1x raw, create
# 10k <= 600 ms, delete 10k <= 200 ms, copy-up 1000 <= 100 ms, RSS <= 64 MiB,
# untar <= 0.8x fuse-overlayfs and <= 4x kernel, parallel create <= 1.0x
# base (only with VSKEL_BASE). Goals relative to fuse-overlayfs or base are
# not applied to the fuse-overlayfs column. Each row ends with the 1-min load
# average (/proc/loadavg) when its runs started and when they ended.
# Timings are reported, never asserted: the exit status is 0 unless
# something failed to run. Run it on a quiet machine: the load average at
# the start and the end is printed with the table and per row (2 cores
# here; the benchmark itself adds about 1 to it while it runs, and up to
# 16 during the parallel create rows, so read their end figure with care; a
# concurrent cargo build makes the create and copy-up rows several times
# slower and noisy).
#
# The header also gives what a wakeup costs here, since every FUSE request
# is two of them (the server's worker, then the caller): the round trip
# of a byte between two processes over pipes, median of 5 x 2,000, with
# the two free to run on different CPUs and both pinned to CPU 0, and the
# guest's halt polling (/sys/module/haltpoll/parameters/guest_halt_poll_ns,
# where the haltpoll cpuidle driver runs: with 0 an idle vCPU halts at
# once, and waking it costs a VM exit; measured on this 2-vCPU VM: 60-71
# us on two CPUs, 6.9 on one, 6.9 on two with 200000 ns of polling).
#
# Known: kernel overlayfs fsyncs every file it copies up (since Linux 4.9,
# for crash safety; the `volatile` mount option skips it), so its copy-up
# row is bound by the disk's flush latency; fuse-overlayfs does not fsync.
#
# Everything mounted is unmounted in an EXIT trap, and scratch layers are
# removed (only once nothing below them is mounted).
set -euo pipefail
export LC_ALL=C

runs=${BENCH_RUNS:-3}
sets=minbase,usr,io,write
kinds_arg=
while getopts n:s:k:h opt; do
    case $opt in
    n) runs=$OPTARG ;;
    s) sets=$OPTARG ;;
    k) kinds_arg=$OPTARG ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
done
((EUID == 0)) || {
    echo "$0: needs root (mounts, drop_caches)" >&2
    exit 2
}
command -v python3 >/dev/null || {
    echo "$0: needs python3" >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${VSKEL_FIXTURES:-/var/tmp/vskel-fixtures}
usr_entries=${BENCH_USR_ENTRIES:-130000}
vskel=${VSKEL:-target/release/vskel}
[[ $vskel == /* ]] || vskel=$repo/$vskel

note() { echo "== $*" >&2; }

# --- which kinds ----------------------------------------------------------------
kinds=()
notes=()
want_kind() { [[ -z $kinds_arg || ,$kinds_arg, == *,$1,* ]]; }
want_kind kernel && kinds+=(kernel)
if want_kind fuse-overlayfs; then
    if command -v fuse-overlayfs >/dev/null; then
        kinds+=(fuse-overlayfs)
    else
        notes+=("fuse-overlayfs: not installed (apt-get install fuse-overlayfs), column skipped")
    fi
fi
if want_kind vskel; then
    if [[ -x $vskel ]] && "$vskel" overlay --help >/dev/null 2>&1; then
        kinds+=(vskel)
    else
        notes+=("vskel: '$vskel overlay' is not available (not built, or no overlay subcommand yet), column skipped")
    fi
fi
vskel_base=${VSKEL_BASE:-}
if [[ -n $vskel_base ]] && want_kind vskel-base; then
    if [[ -x $vskel_base ]] && "$vskel_base" overlay --help >/dev/null 2>&1; then
        kinds+=(vskel-base)
    else
        notes+=("vskel-base: '$vskel_base overlay' is not available, column skipped")
    fi
fi
((${#kinds[@]})) || {
    echo "$0: no overlay kind to measure" >&2
    exit 2
}
is_fuse() { [[ $1 == fuse-overlayfs || $1 == vskel || $1 == vskel-base ]]; }

# --- scratch and cleanup --------------------------------------------------------
base=${BENCH_DIR:-/var/tmp}
if [[ $(stat -f -c %T "$base") == tmpfs ]]; then
    echo "$0: $base is tmpfs; set BENCH_DIR to a disk filesystem" >&2
    exit 2
fi
scratch_fs=${BENCH_SCRATCH_FS:-loop}
work=$(mktemp -d "$base/compare-overlays.XXXXXX")
img=

# Mount points strictly below $work that are mounted, deepest first.
mounted_below() {
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r
}
# shellcheck disable=SC2317  # called from the trap
cleanup() {
    local rc=$? m
    trace_teardown
    while read -r m; do
        [[ -n $m ]] || continue
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(mounted_below)
    if [[ -n $(mounted_below) ]]; then
        echo "$0: still mounted below $work; left it in place" >&2
    elif [[ -n $img ]]; then
        umount "$work" 2>/dev/null || umount -l "$work" || true
        rm -f "$img"
        rmdir "$work" 2>/dev/null || true
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT

# --- FUSE request counts (tracefs) ------------------------------------------------
tracefs=/sys/kernel/tracing
trace_inst=
trace_note=
trace_mounted=
# A private tracefs instance for fuse_request_send, or a note saying why not
# (then every request count is "-").
trace_setup() {
    if ! mountpoint -q "$tracefs"; then
        if mount -t tracefs nodev "$tracefs" 2>/dev/null; then
            trace_mounted=1
        else
            trace_note="tracefs not mounted on $tracefs and could not be: request counts are '-'"
            return 0
        fi
    fi
    if [[ ! -d $tracefs/events/fuse/fuse_request_send ]]; then
        trace_note="no fuse:fuse_request_send tracepoint in $tracefs (fuse module not loaded, or a kernel before 6.16): request counts are '-'"
        return 0
    fi
    trace_inst=$tracefs/instances/compare-overlays-$$
    mkdir "$trace_inst"
    # ~20 requests x 10k files x ~50 bytes an event fits in 16 MiB a CPU.
    echo 16384 >"$trace_inst/buffer_size_kb"
}
# shellcheck disable=SC2317  # called from the trap
trace_teardown() {
    if [[ -n $trace_inst && -d $trace_inst ]]; then
        echo 0 >"$trace_inst/events/fuse/fuse_request_send/enable" || true
        rmdir "$trace_inst" || true
    fi
    if [[ -n $trace_mounted ]]; then umount "$tracefs" || true; fi
}

# The kernel's dev_t of the superblock mounted on MNT, as the tracepoint's
# `connection` shows it (MKDEV: major << 20 | minor; stat's %d is the
# userspace encoding, equal only for minors below 256).
fuse_conn() { # MNT
    local maj min
    read -r maj min < <(stat -c '%Hd %Ld' "$1")
    echo $(((maj << 20) | min))
}

declare -A reqs nfiles
workloads=()
# Runs CMD... (stdout to /dev/null) with the FUSE requests to MNT's
# connection recorded, and stores their number (reqs[WL|KIND]) and the
# number per opcode (reqs[WL|KIND|OPCODE]); "-" if they cannot be counted.
traced() { # WL KIND MNT CMD...
    local wl=$1 kind=$2 mnt=$3 ev conn line
    shift 3
    if [[ -z $trace_inst ]]; then
        "$@" >/dev/null
        reqs[$wl|$kind]=-
        return
    fi
    ev=$trace_inst/events/fuse/fuse_request_send
    conn=$(fuse_conn "$mnt")
    echo "connection == $conn" >"$ev/filter"
    echo >"$trace_inst/trace"
    echo 1 >"$ev/enable"
    "$@" >/dev/null
    echo 0 >"$ev/enable"
    while read -r line; do
        case $line in
        lost) reqs[$wl|$kind]=- ;;
        total\ *) reqs[$wl|$kind]=${line#total } ;;
        *) reqs[$wl|$kind|${line% *}]=${line#* } ;;
        esac
    done < <(awk '
        /^# entries-in-buffer\/entries-written:/ {
            split($3, n, "/"); if (n[1] != n[2]) lost = 1 }
        /^#/ { next }
        match($0, /\(FUSE_[A-Z0-9_]+\)/) {
            op[substr($0, RSTART + 6, RLENGTH - 7)]++; total++ }
        END {
            if (lost) { print "lost"; exit }
            print "total", total + 0
            for (o in op) print o, op[o] }' "$trace_inst/trace")
    echo >"$trace_inst/trace"
    echo 0 >"$ev/filter"
    if [[ ${reqs[$wl|$kind]} == - ]]; then
        notes+=("$wl: $kind: the trace buffer overflowed, requests not counted")
    fi
}
trap 'exit 130' INT TERM

# Upper and work dirs (and raw's scratch dirs) live on a fresh journaled ext4
# in a loop-mounted image, the usual host setup. The root filesystem here is
# ext4 without a journal, where creating files soon after deleting many is
# pathologically slow (ext4's recently_deleted() scan in inode allocation
# runs only without a journal: 10k creates take 0.3 s or 5 s by luck).
# BENCH_SCRATCH_FS=dir uses a plain directory under BENCH_DIR instead.
if [[ $scratch_fs == loop ]]; then
    img=$work.img
    truncate -s "${BENCH_SCRATCH_SIZE:-8G}" "$img"
    mkfs.ext4 -q -F "$img"
    mount -o loop "$img" "$work"
fi

# --- fixtures -------------------------------------------------------------------
count_entries() { find "$1" | wc -l; }

minbase_fixture() {
    local dir=$fixtures/rootfs-bookworm
    if [[ ! -f $dir/.vskel-rootfs-complete ]]; then
        note "building the minbase fixture in $dir"
        mkdir -p "$fixtures"
        (
            flock 9
            bash "$repo/../shared/fixtures/make-rootfs.sh" "$dir"
        ) 9>"$dir.lock"
    fi
    echo "$dir"
}

usr_fixture() {
    local dir=$fixtures/usr-copy n i=0
    if [[ ! -f $dir.complete ]]; then
        note "copying /usr to $dir (once)"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$fixtures"
        cp -a /usr "$dir.tmp"
        n=$(count_entries "$dir.tmp")
        while ((n < usr_entries)); do
            i=$((i + 1))
            cp -a "$dir.tmp/share" "$dir.tmp/share-dup$i"
            n=$(count_entries "$dir.tmp")
        done
        mv "$dir.tmp" "$dir"
        echo "$n entries (cp -a /usr, $i copies of share/ added)" >"$dir.complete"
    fi
    note "usr fixture: $(cat "$dir.complete")"
    echo "$dir"
}

io_fixture() {
    local dir=$fixtures/bench-io
    if [[ ! -f $dir/.complete ]]; then
        note "making $dir (1 GiB file, 1,000 small files; once)"
        rm -rf "$dir"
        mkdir -p "$dir/copyup"
        dd if=/dev/urandom of="$dir/big.bin" bs=1M count=1024 status=none
        python3 - "$dir/copyup" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(1000):
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(os.urandom(4096))
PY
        touch "$dir/.complete"
    fi
    echo "$dir"
}

# A plain (uncompressed) tar of the minbase tree's usr/share, made once.
untar_fixture() {
    local tarball=$fixtures/usr-share.tar src
    src=$(minbase_fixture)
    if [[ ! -f $tarball ]]; then
        note "making $tarball (once)"
        tar -cf "$tarball.tmp$$" -C "$src/usr" share
        mv "$tarball.tmp$$" "$tarball"
    fi
    echo "$tarball"
}

# --- mounting -------------------------------------------------------------------
# Layers of SET for KIND live in $work/SET-KIND/{upper,work,mnt}; the lowers
# of SET are in lowers[SET].
declare -A lowers

layer_dir() { echo "$work/$2-$1"; }
mnt_of() { echo "$work/$2-$1/mnt"; }

fresh_layers() { # KIND SET
    local d
    d=$(layer_dir "$1" "$2")
    rm -rf --one-file-system "$d"
    mkdir -p "$d"/{upper,work,mnt}
}

mount_kind() { # KIND SET
    local kind=$1 set=$2 d opts
    d=$(layer_dir "$kind" "$set")
    opts="lowerdir=${lowers[$set]},upperdir=$d/upper,workdir=$d/work"
    case $kind in
    kernel)
        mount -t overlay overlay -o "$opts${BENCH_KERNEL_OPTS:+,$BENCH_KERNEL_OPTS}" "$d/mnt"
        ;;
    fuse-overlayfs) fuse-overlayfs -o "$opts" "$d/mnt" ;;
    vskel) "$vskel" overlay -o "$opts" "$d/mnt" ;;
    vskel-base) "$vskel_base" overlay -o "$opts" "$d/mnt" ;;
    esac
    mountpoint -q "$d/mnt" || {
        echo "$0: $kind did not mount $d/mnt" >&2
        exit 1
    }
}

umount_kind() { # KIND SET
    local m
    m=$(mnt_of "$1" "$2")
    if mountpoint -q "$m"; then
        umount "$m" || umount -l "$m"
    fi
    if is_fuse "$1"; then
        # Let the server exit before the layers are mounted again.
        local i
        for ((i = 0; i < 100; i++)); do
            [[ -z $(server_pid "$m") ]] && break
            sleep 0.05
        done
    fi
}

# The pid of the process that has MNT as a whole argument (the FUSE server).
server_pid() {
    local p arg
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} != "$$" ]] || continue
        while IFS= read -r -d '' arg; do
            if [[ $arg == "$1" ]]; then
                echo "${p#/proc/}"
                return
            fi
        done 2>/dev/null <"$p/cmdline" || true
    done
}

# The directory a measurement of KIND on SET works in: the mount, or for
# raw the first lower itself.
target() { # KIND SET
    if [[ $1 == raw ]]; then
        echo "${lowers[$2]%%:*}"
    else
        mnt_of "$1" "$2"
    fi
}

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# --- timing ---------------------------------------------------------------------
now_us() { echo "${EPOCHREALTIME/./}"; }

# Milliseconds a command takes (its stdout goes to /dev/null).
time_ms() {
    local t0 t1
    t0=$(now_us)
    "$@" >/dev/null
    t1=$(now_us)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }'
}

find_count() { find "$1" | wc -l; }

# python3 helpers; each prints the milliseconds of the timed part only.
py_helper() {
    python3 - "$@" <<'PY'
import os, sys, time

op = sys.argv[1]
elapsed = None
if op == "lstat":  # ROOT LIST0: lstat ROOT/path for every path of LIST0
    root = os.fsencode(sys.argv[2])
    with open(sys.argv[3], "rb") as f:
        paths = [os.path.join(root, p) for p in f.read().split(b"\0") if p]
    t = time.perf_counter()
    for p in paths:
        os.lstat(p)
elif op == "create":  # DIR N
    d, n = sys.argv[2], int(sys.argv[3])
    os.mkdir(d)
    data = b"x" * 64
    names = [os.path.join(d, "f%05d" % i) for i in range(n)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, flags, 0o644)
        os.write(fd, data)
        os.close(fd)
elif op == "delete":  # DIR N
    d, n = sys.argv[2], int(sys.argv[3])
    names = [os.path.join(d, "f%05d" % i) for i in range(n)]
    t = time.perf_counter()
    for p in names:
        os.unlink(p)
elif op == "parcreate":  # DIR P N: P processes, N files each in DIR/pI
    d, procs, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.mkdir(d)
    dirs = [os.path.join(d, "p%02d" % i) for i in range(procs)]
    for x in dirs:
        os.mkdir(x)
    data = b"x" * 64
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    ready_r, ready_w = os.pipe()
    gun_r, gun_w = os.pipe()
    res_r, res_w = os.pipe()
    pids = []
    for x in dirs:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(ready_r)
                os.close(gun_w)
                os.close(res_r)
                names = [os.path.join(x, "f%05d" % i) for i in range(n)]
                os.write(ready_w, b"r")
                os.read(gun_r, 1)
                t0 = time.perf_counter()
                for p in names:
                    fd = os.open(p, flags, 0o644)
                    os.write(fd, data)
                    os.close(fd)
                t1 = time.perf_counter()
                os.write(res_w, b"%.9f %.9f\n" % (t0, t1))
                code = 0
            except BaseException as e:
                sys.stderr.write("parcreate %s: %s\n" % (x, e))
            finally:
                os._exit(code)
        pids.append(pid)
    for fd in (ready_w, gun_r, res_w):
        os.close(fd)
    ready = b""
    while len(ready) < procs:
        b = os.read(ready_r, procs)
        if not b:
            break
        ready += b
    # perf_counter is CLOCK_MONOTONIC: comparable across the processes.
    os.write(gun_w, b"g" * procs)
    out = b""
    while True:
        b = os.read(res_r, 4096)
        if not b:
            break
        out += b
    failed = 0
    for pid in pids:
        if os.waitpid(pid, 0)[1] != 0:
            failed += 1
    spans = [tuple(map(float, l.split())) for l in out.decode().splitlines()]
    if failed or len(spans) != procs:
        sys.exit("parcreate: %d of %d processes failed" % (procs - len(spans), procs))
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
elif op == "append":  # DIR: append one byte to every file of DIR
    d = sys.argv[2]
    names = [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for p in names:
        os.lstat(p)
    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"x")
        os.close(fd)
else:
    sys.exit("unknown op " + op)
if elapsed is None:
    elapsed = time.perf_counter() - t
print("%.1f" % (elapsed * 1000))
if op == "delete":
    os.rmdir(d)
PY
}

# --- results --------------------------------------------------------------------
declare -A results goal row_load
rows=()
load1() { cut -d' ' -f1 /proc/loadavg; }
# GOAL is kernel:X, raw:X, fo:X (fuse-overlayfs), base:X, ms:X or mib:X, or
# several of them joined by "&" (all must hold). The 1-min load average
# when the row starts is kept; row_end adds the one at its end.
add_row() { # ROW GOAL
    rows+=("$1")
    goal[$1]=$2
    row_load[$1]=$(load1)
}
row_end() { # ROW...
    local r
    for r; do row_load[$r]+="-$(load1)"; done
}
record() { # ROW KIND VALUE; an empty VALUE (the run failed) becomes a note
    if [[ -z $3 ]]; then
        notes+=("$1: $2: a run failed (see its error above), the median has one value less")
        return
    fi
    results[$1|$2]+="$3 "
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Kinds in the order of run R (rotated, so none always goes first).
order() { # R KIND...
    local r=$1
    shift
    local list=("$@") n=$#
    local i
    for ((i = 0; i < n; i++)); do
        echo "${list[$(((i + r) % n))]}"
    done
}

# --- measurements -----------------------------------------------------------------
measure_tree_set() { # SET
    local set=$1 k r c list all=(raw "${kinds[@]}")
    note "$set: lowers ${lowers[$set]}"
    for k in "${kinds[@]}"; do
        fresh_layers "$k" "$set"
        mount_kind "$k" "$set"
    done
    # Every view must show the same number of entries as the lower tree.
    for k in "${all[@]}"; do
        c=$(find_count "$(target "$k" "$set")")
        note "$set: $k: $c entries"
    done

    add_row "$set: find warm" kernel:1.3
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            record "$set: find warm" "$k" "$(time_ms find_count "$(target "$k" "$set")")"
        done
    done
    row_end "$set: find warm"

    add_row "$set: stat warm" kernel:1.2
    list=$work/$set.paths0
    (cd "${lowers[$set]%%:*}" && find . -mindepth 1 -print0) >"$list"
    for k in "${all[@]}"; do
        py_helper lstat "$(target "$k" "$set")" "$list" >/dev/null
    done
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            record "$set: stat warm" "$k" "$(py_helper lstat "$(target "$k" "$set")" "$list")"
        done
    done
    row_end "$set: stat warm"

    add_row "$set: rss after walk (MiB)" mib:64
    for k in "${kinds[@]}"; do
        is_fuse "$k" || continue
        local pid rss
        pid=$(server_pid "$(mnt_of "$k" "$set")")
        rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
        record "$set: rss after walk (MiB)" "$k" "$rss"
    done
    row_end "$set: rss after walk (MiB)"

    add_row "$set: find cold" kernel:1.5
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            [[ $k == raw ]] || umount_kind "$k" "$set"
            drop_caches
            [[ $k == raw ]] || mount_kind "$k" "$set"
            record "$set: find cold" "$k" "$(time_ms find_count "$(target "$k" "$set")")"
        done
    done
    row_end "$set: find cold"
    for k in "${kinds[@]}"; do
        umount_kind "$k" "$set"
    done
}

measure_io_set() {
    local set=io k r t dir="${lowers[io]%%:*}" all=(raw "${kinds[@]}")
    note "io: lowers ${lowers[io]}"
    for k in "${kinds[@]}"; do
        fresh_layers "$k" io
        mount_kind "$k" io
    done

    add_row "io: read 1 GiB warm" raw:1.1
    for k in "${all[@]}"; do
        dd if="$(target "$k" io)/big.bin" of=/dev/null bs=1M status=none
    done
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            record "io: read 1 GiB warm" "$k" \
                "$(time_ms dd if="$(target "$k" io)/big.bin" of=/dev/null bs=1M status=none)"
        done
    done
    row_end "io: read 1 GiB warm"

    # raw: plain directories on the same filesystem as the layers.
    mkdir -p "$work/raw-scratch"
    add_row "io: create 10k" ms:600
    add_row "io: delete 10k" ms:200
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            if [[ $k == raw ]]; then t=$work/raw-scratch/new$r; else t=$(mnt_of "$k" io)/new$r; fi
            record "io: create 10k" "$k" "$(py_helper create "$t" 10000)"
            record "io: delete 10k" "$k" "$(py_helper delete "$t" 10000)"
        done
    done
    row_end "io: create 10k" "io: delete 10k"
    # One more create 10k per FUSE kind, traced and not timed.
    workloads+=("io: create 10k")
    nfiles["io: create 10k"]=10000
    for k in "${kinds[@]}"; do
        is_fuse "$k" || continue
        t=$(mnt_of "$k" io)/traced
        traced "io: create 10k" "$k" "$(mnt_of "$k" io)" py_helper create "$t" 10000
        py_helper delete "$t" 10000 >/dev/null
    done

    add_row "io: copy-up 1000" ms:100
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            if [[ $k == raw ]]; then
                rm -rf "$work/raw-scratch/copyup"
                cp -a "$dir/copyup" "$work/raw-scratch/copyup"
                t=$work/raw-scratch/copyup
            else
                umount_kind "$k" io
                fresh_layers "$k" io
                mount_kind "$k" io
                t=$(mnt_of "$k" io)/copyup
            fi
            record "io: copy-up 1000" "$k" "$(py_helper append "$t")"
        done
    done
    row_end "io: copy-up 1000"
    for k in "${kinds[@]}"; do
        umount_kind "$k" io
    done
}

measure_write_set() { # TARBALL
    local set=write tarball=$1 k r t p row all=(raw "${kinds[@]}")
    note "write: lowers ${lowers[write]}"
    for k in "${kinds[@]}"; do
        fresh_layers "$k" write
        mount_kind "$k" write
    done
    # raw: plain directories on the same filesystem as the layers.
    mkdir -p "$work/raw-scratch/write"
    scratch() { # KIND NAME
        if [[ $1 == raw ]]; then echo "$work/raw-scratch/write/$2"; else echo "$(mnt_of "$1" write)/$2"; fi
    }

    row="write: untar usr/share"
    add_row "$row" "fo:0.8&kernel:4"
    for ((r = 0; r < runs; r++)); do
        for k in $(order "$r" "${all[@]}"); do
            t=$(scratch "$k" "untar$r")
            mkdir "$t"
            sync
            record "$row" "$k" "$(time_ms tar -xf "$tarball" -C "$t")"
        done
    done
    row_end "$row"
    # One more untar per FUSE kind, traced and not timed.
    workloads+=("$row")
    # Regular files only (directories, symlinks and hard links are created
    # too, and their requests counted).
    nfiles[$row]=$(tar -tvf "$tarball" | grep -c '^-')
    for k in "${kinds[@]}"; do
        is_fuse "$k" || continue
        t=$(scratch "$k" untar-traced)
        mkdir "$t"
        sync
        traced "$row" "$k" "$(mnt_of "$k" write)" tar -xf "$tarball" -C "$t"
    done

    for p in 4 16; do
        row="write: parallel create ${p}x2k"
        add_row "$row" base:1.0
        for ((r = 0; r < runs; r++)); do
            for k in $(order "$r" "${all[@]}"); do
                # Fresh layers (raw: a fresh scratch dir) every run: the
                # scratch ext4 has 512k inodes, fewer than all runs create.
                if [[ $k == raw ]]; then
                    rm -rf --one-file-system "$work/raw-scratch/write"
                    mkdir "$work/raw-scratch/write"
                else
                    umount_kind "$k" write
                    fresh_layers "$k" write
                    mount_kind "$k" write
                fi
                sync
                record "$row" "$k" "$(py_helper parcreate "$(scratch "$k" "par$p-$r")" "$p" 2000)"
            done
        done
        row_end "$row"
    done
    for k in "${kinds[@]}"; do
        umount_kind "$k" write
    done
}

# --- main -----------------------------------------------------------------------
mkdir -p "$work/empty"
t_start=$(now_us)
# What a wakeup costs here (see the header).
pipe_round_trip() {
    python3 - <<'PY'
import os, statistics, time
def trip(n=2000):
    r1, w1 = os.pipe(); r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            os.read(r1, 1); os.write(w2, b"x")
        os._exit(0)
    t = time.perf_counter()
    for _ in range(n):
        os.write(w1, b"x"); os.read(r2, 1)
    dt = time.perf_counter() - t
    os.waitpid(pid, 0)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    return dt / n * 1e6
print("%.1f" % statistics.median(trip() for _ in range(5)))
PY
}
halt_poll=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo "-")
wakeups="pipe round trip $(pipe_round_trip) us on any CPUs, $(taskset -c 0 bash -c "$(declare -f pipe_round_trip); pipe_round_trip") us on CPU 0; guest_halt_poll_ns $halt_poll"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
IFS=, read -r -a set_list <<<"$sets"
for s in "${set_list[@]}"; do
    case $s in
    minbase) lowers[minbase]=$(minbase_fixture):$work/empty ;;
    usr) lowers[usr]=$(usr_fixture):$work/empty ;;
    io) lowers[io]=$(io_fixture):$work/empty ;;
    write)
        lowers[write]=$(minbase_fixture):$work/empty
        tarball=$(untar_fixture)
        ;;
    *)
        echo "$0: unknown set $s" >&2
        exit 2
        ;;
    esac
done
trace_setup
for s in "${set_list[@]}"; do
    note "$s: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
    case $s in
    io) measure_io_set ;;
    write) measure_write_set "$tarball" ;;
    *) measure_tree_set "$s" ;;
    esac
    note "$s: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
done

# --- report ---------------------------------------------------------------------
cols=(raw kernel fuse-overlayfs vskel vskel-base)
ratio() { # A B
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }'
}
# "ok" or "MISS" for VALUE against every part of ROW's goal, with the ratios;
# "-" if a part cannot be judged. SELF is the column judged: the parts
# relative to fuse-overlayfs or base are skipped for fuse-overlayfs.
verdict() { # ROW SELF VALUE RAW KERNEL FUSE-OVERLAYFS BASE
    awk -v spec="${goal[$1]}" -v self="$2" -v v="$3" \
        -v ref_raw="$4" -v ref_kernel="$5" -v ref_fo="$6" -v ref_base="$7" 'BEGIN {
        if (v == "-") { print "-"; exit }
        ref["raw"] = ref_raw; ref["kernel"] = ref_kernel; ref["fo"] = ref_fo; ref["base"] = ref_base
        np = split(spec, parts, "&"); ok = 1; judged = 0; rs = ""
        for (i = 1; i <= np; i++) {
            t = parts[i]; sub(/:.*/, "", t); lim = parts[i]; sub(/^[^:]*:/, "", lim); lim += 0
            if (self == "fuse-overlayfs" && (t == "fo" || t == "base")) continue
            if (t in ref) {
                if (ref[t] == "-" || ref[t] == 0) { print "-"; exit }
                r = v / ref[t]; rs = rs (rs == "" ? "" : ",") sprintf("%.2fx", r)
            } else r = v
            judged = 1
            if (r > lim) ok = 0
        }
        if (!judged) { print "-"; exit }
        s = ok ? "ok" : "MISS"
        if (rs != "") printf "%s (%s)", s, rs; else print s }'
}
goal_text() {
    local part out=
    IFS='&' read -r -a parts <<<"${goal[$1]}"
    for part in "${parts[@]}"; do
        case ${part%%:*} in
        kernel) out+="${out:+, }${part#*:}x kernel" ;;
        raw) out+="${out:+, }${part#*:}x raw" ;;
        fo) out+="${out:+, }${part#*:}x fo" ;;
        base) out+="${out:+, }${part#*:}x base" ;;
        ms) out+="${out:+, }${part#*:} ms" ;;
        mib) out+="${out:+, }${part#*:} MiB" ;;
        esac
    done
    echo "<= $out"
}

echo
echo "compare-overlays: $runs runs, medians in ms (rss in MiB); kernel options: ${BENCH_KERNEL_OPTS:-defaults}"
echo "uppers on: $([[ -n $img ]] && echo "journaled ext4 (loop image)" || echo "$base")"
echo "load average: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) cores)"
echo "wakeups: $wakeups"
for n in "${notes[@]}"; do echo "note: $n"; done
printf '%-28s %9s %9s %9s %9s %9s %8s %8s %8s  %-16s %-14s %-14s %s\n' \
    measurement raw kernel fuse-ovl vskel base vs/kern fo/kern vs/base "goal (vskel)" fuse-ovl vskel "load 1m"
for row in "${rows[@]}"; do
    declare -A med=()
    for c in "${cols[@]}"; do
        med[$c]=$(median <<<"${results[$row|$c]:-}")
    done
    printf '%-28s %9s %9s %9s %9s %9s %8s %8s %8s  %-16s %-14s %-14s %s\n' "$row" \
        "${med[raw]}" "${med[kernel]}" "${med[fuse-overlayfs]}" "${med[vskel]}" "${med[vskel-base]}" \
        "$(ratio "${med[vskel]}" "${med[kernel]}")" "$(ratio "${med[fuse-overlayfs]}" "${med[kernel]}")" \
        "$(ratio "${med[vskel]}" "${med[vskel-base]}")" \
        "$(goal_text "$row")" \
        "$(verdict "$row" fuse-overlayfs "${med[fuse-overlayfs]}" "${med[raw]}" "${med[kernel]}" \
            "${med[fuse-overlayfs]}" "${med[vskel-base]}")" \
        "$(verdict "$row" vskel "${med[vskel]}" "${med[raw]}" "${med[kernel]}" \
            "${med[fuse-overlayfs]}" "${med[vskel-base]}")" \
        "${row_load[$row]}"
    unset med
done

# FUSE requests per created file, then per opcode.
fuse_cols=()
for c in fuse-overlayfs vskel vskel-base; do
    [[ " ${kinds[*]} " == *" $c "* ]] && fuse_cols+=("$c")
done
per_file() { # COUNT FILES
    awk -v c="$1" -v n="$2" 'BEGIN { if (c == "" || c == "-" || n == 0) print "-"; else printf "%.2f", c / n }'
}
if ((${#workloads[@]} && ${#fuse_cols[@]})); then
    echo
    echo "FUSE requests per created regular file (fuse_request_send tracepoint, one untimed traced run per kind):"
    [[ -z $trace_note ]] || echo "note: $trace_note"
    printf '%-28s %7s' workload files
    for c in "${fuse_cols[@]}"; do printf ' %9s' "${c/fuse-overlayfs/fuse-ovl}"; done
    echo
    for wl in "${workloads[@]}"; do
        printf '%-28s %7s' "$wl" "${nfiles[$wl]}"
        for c in "${fuse_cols[@]}"; do printf ' %9s' "$(per_file "${reqs[$wl|$c]:-}" "${nfiles[$wl]}")"; done
        echo
    done
    echo "by opcode, per created file (the 8 most frequent of these kinds; total requests in the last line):"
    for wl in "${workloads[@]}"; do
        top=$(for key in "${!reqs[@]}"; do
            [[ $key == "$wl|"*"|"* ]] || continue
            echo "${key##*|} ${reqs[$key]}"
        done | awk '{ n[$1] += $2 } END { for (o in n) print n[o], o }' | sort -rn | head -8 | awk '{ print $2 }')
        [[ -n $top ]] || continue
        printf '  %-26s' "$wl"
        for c in "${fuse_cols[@]}"; do printf ' %9s' "${c/fuse-overlayfs/fuse-ovl}"; done
        echo
        for op in $top; do
            printf '    %-24s' "$op"
            for c in "${fuse_cols[@]}"; do
                if [[ ${reqs[$wl|$c]:--} == - ]]; then
                    printf ' %9s' -
                else
                    printf ' %9s' "$(per_file "${reqs[$wl|$c|$op]:-0}" "${nfiles[$wl]}")"
                fi
            done
            echo
        done
        printf '    %-24s' "(total requests)"
        for c in "${fuse_cols[@]}"; do printf ' %9s' "${reqs[$wl|$c]:--}"; done
        echo
    done
fi
echo "all runs (ms):"
for row in "${rows[@]}"; do
    for c in "${cols[@]}"; do
        [[ -n ${results[$row|$c]:-} ]] && echo "  $row | $c: ${results[$row|$c]}"
    done
done
awk -v a="$t_start" -v b="$(now_us)" 'BEGIN { printf "total time: %.0f s\n", (b - a) / 1e6 }'
