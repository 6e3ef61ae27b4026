#!/usr/bin/env bash
# Runs every test of the workspace: the one test command README.md and .ci/run use.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
# Property tests draw from a fixed seed here, so a run is repeatable; set
# PROPTEST_RNG_SEED to another number to explore other inputs.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261202}"
# ec-simd/isal: the erasure-code tests also compare against ISA-L itself.
cargo test --workspace --all-targets --locked --features ec-simd/isal "$@"
