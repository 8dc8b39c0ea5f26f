#!/bin/bash
# Turns the kernel's seccomp audit lines (`audit: type=1326 ... exe="..." ... arch=c000003e
# syscall=NNN ...`, from `dmesg` or a saved copy on stdin) into syscall names, one per line with
# how often each was logged: how seccomp-profiles/wasm-guest.json is measured (see its README).
#
#   tools/seccomp-syscalls.sh [EXE_SUBSTRING] < dmesg.log
#
# Only lines whose exe contains EXE_SUBSTRING count (default: containerd-shim-). Numbers are
# named from the kernel headers of this machine (x86_64: asm/unistd_64.h, aarch64:
# asm-generic/unistd.h), then from the unified table of newer calls (451 on, the same number on
# every architecture); an unknown number is printed as `nr_NNN`, an x32 one as `x32:NAME`.
set -euo pipefail

exe_filter=${1:-containerd-shim-}
x86_header=/usr/include/x86_64-linux-gnu/asm/unistd_64.h
generic_header=/usr/include/asm-generic/unistd.h

table() { # ARCH: "NUMBER NAME" lines
    case $1 in
        c000003e) [ -r "$x86_header" ] && awk '/^#define __NR_/ { sub("__NR_", "", $2); print $3, $2 }' "$x86_header" ;;
        c00000b7 | c00000f3) [ -r "$generic_header" ] &&
            awk '/^#define __NR(3264)?_[a-z0-9_]+[ \t]+[0-9]+/ { n = $2; sub("__NR(3264)?_", "", n); print $3, n }' "$generic_header" ;;
    esac
    cat <<'NEWER'
451 cachestat
452 fchmodat2
453 map_shadow_stack
454 futex_wake
455 futex_wait
456 futex_requeue
457 statmount
458 listmount
459 lsm_get_self_attr
460 lsm_set_self_attr
461 lsm_list_modules
462 mseal
463 setxattrat
464 getxattrat
465 listxattrat
466 removexattrat
467 open_tree_attr
468 file_getattr
469 file_setattr
NEWER
}

lines=$(grep 'type=1326' | grep -F "exe=\"" | grep -F -- "$exe_filter" || true)
[ -n "$lines" ] || { echo "no seccomp audit lines for exe *$exe_filter*" >&2; exit 1; }
for arch in $(grep -o 'arch=[0-9a-f]*' <<<"$lines" | sort -u | cut -d= -f2); do
    grep -F "arch=$arch " <<<"$lines" | grep -o 'syscall=[0-9]*' | cut -d= -f2 |
        awk -v arch="$arch" 'NR == FNR { name[$1] = $2; next }
            { nr = $1 + 0; x32 = ""; if (nr >= 1073741824) { nr -= 1073741824; x32 = "x32:" }
              n = (nr in name) ? name[nr] : "nr_" nr; count[x32 n]++ }
            END { for (n in count) print n, count[n], "arch=" arch }' <(table "$arch") -
done | sort
