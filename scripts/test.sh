#!/usr/bin/env bash
# Runs every test of the workspace: the one test command README.md and .ci/run use.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# ec-simd/isal: the erasure-code tests also compare against ISA-L itself.
cargo test --workspace --all-targets --locked --features ec-simd/isal "$@"
