#!/usr/bin/env bash
# Builds and runs Sepia's main job: `sepia-bench` (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --bench-tools
cargo run --release --locked -p sepia-bench --bin sepia-bench -- "$@"
