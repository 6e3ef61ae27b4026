#!/usr/bin/env bash
# Builds and runs Sepia's main job: `sepia-bench` (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --bench-tools
# The cluster benchmark starts these daemons from next to sepia-bench.
cargo build --release --locked -p sepia-mon -p sepia-osd -p sepia-client
cargo run --release --locked -p sepia-bench --bin sepia-bench -- "$@"
