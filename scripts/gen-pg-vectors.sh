#!/usr/bin/env bash
# Regenerates proto/tests/vectors/ from Ceph's own osdmaptool (Debian's
# ceph-base): object -> PG and PG -> raw/up/acting sets, as Ceph computes them.
# The vectors are committed; tests read them and never need Ceph installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=proto/tests/vectors
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Object names: edge lengths around rjenkins' 12-byte blocks, RBD/rados-bench
# shaped names, non-ASCII bytes.
names="$out/object-names.txt"
{
    echo "test-object-1"
    for n in 1 2 3 4 5 7 8 9 10 11 12 13 23 24 25 36 100; do head -c "$n" /dev/zero | tr '\0' 'x'; echo; done
    for i in $(seq 0 40); do echo "rbd_data.1f2e3d4c5b6a.$(printf '%016x' "$i")"; done
    for i in $(seq 0 40); do echo "benchmark_data_node-${i}_4242_object${i}"; done
    echo "ünïcødé-名前"
    echo "with space and 'quote'"
} > "$names"

# 6 OSDs in one host, pool 1 pg_num 384 (not a power of two).
osdmaptool --createsimple 6 --with-default-pool --clobber "$tmp/small" >/dev/null 2>&1
# 40 OSDs, the hosts8x4 CRUSH map (32 devices), pg_num 640 / pgp_num 320.
crushtool -c ../shared/fixtures/crush/hosts8x4.txt -o "$tmp/hosts8x4.bin"
osdmaptool --createsimple 40 --with-default-pool --pg-bits 4 --pgp-bits 3 --clobber "$tmp/big" >/dev/null 2>&1
osdmaptool "$tmp/big" --import-crush "$tmp/hosts8x4.bin" >/dev/null 2>&1

for m in small big; do
    : > "$out/objects-$m.txt"
    while IFS= read -r name; do
        osdmaptool "$tmp/$m" --mark-up-in --test-map-object "$name" --pool 1 2>/dev/null \
            | grep "^ object" >> "$out/objects-$m.txt"
    done < "$names"
done
osdmaptool "$tmp/big" --mark-up-in --test-map-pgs-dump-all --pool 1 2>/dev/null \
    | grep '^1\.' > "$out/pgs-big-allin.txt"
osdmaptool "$tmp/big" --mark-up-in --mark-out 5 --test-map-pgs-dump-all --pool 1 2>/dev/null \
    | grep '^1\.' > "$out/pgs-big-out5.txt"
osdmaptool "$tmp/big" --print 2>/dev/null | grep '^pool' > "$out/pool-big.txt"
osdmaptool "$tmp/small" --print 2>/dev/null | grep '^pool' > "$out/pool-small.txt"
echo "vectors written to $out"
