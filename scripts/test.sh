#!/usr/bin/env bash
# THE test command (README "Run the tests"; .ci/run calls it). Works on a fresh Debian machine
# with the Rust toolchain, python3/pip and apt:
#   1. scripts/install-test-deps.sh (haproxy, cloud-init, isoinfo/xorriso, Terraform 1.0.3)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo build --release -p terraform-provider-waddle   (the binary the CLI tests install)
#   5. cargo test --workspace --no-fail-fast   (unit, gRPC, emulator, docs-staleness and real-CLI acceptance tests)
# Honours CARGO_TARGET_DIR. Any failure fails the command; a summary is printed at the end.
#
# Knobs: TF_ACC_TERRAFORM_PATH (CLI to test with; else `tofu` on PATH, else the pinned
# Terraform), WADDLE_ACC_KEEP=1 (keep acceptance work dirs), extra arguments are passed to
# `cargo test` (e.g. `scripts/test.sh -- --test-threads=1`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
LOG_DIR="$TARGET_DIR/test-logs"
mkdir -p "$LOG_DIR"
TEST_LOG="$LOG_DIR/cargo-test.log"
NOTICE_LOG="$LOG_DIR/acceptance-notices.txt"
: >"$TEST_LOG"
: >"$NOTICE_LOG"

STAGES=()
STARTED=$(date +%s)
CURRENT=""

summary() {
  local rc=$?
  set +e
  echo
  echo "==================== waddle test summary ===================="
  for s in "${STAGES[@]}"; do echo "  $s"; done
  if [ -n "$CURRENT" ]; then echo "  FAILED  $CURRENT"; fi
  if [ -s "$TEST_LOG" ]; then
    # Sum libtest's per-binary result lines.
    local passed failed ignored
    read -r passed failed ignored < <(awk '
      /^test result:/ {
        for (i = 1; i <= NF; i++) {
          if ($(i+1) ~ /^passed;?$/)  p += $i
          if ($(i+1) ~ /^failed;?$/)  f += $i
          if ($(i+1) ~ /^ignored;?$/) g += $i
        }
      }
      END { printf "%d %d %d\n", p, f, g }' "$TEST_LOG")
    echo
    echo "  cargo test: $passed passed, $failed failed, $ignored ignored (log: $TEST_LOG)"
    if grep -qE '^test .* \.\.\. FAILED$' "$TEST_LOG"; then
      echo "  failed tests:"
      grep -E '^test .* \.\.\. FAILED$' "$TEST_LOG" | sed -E 's/^test (.*) \.\.\. FAILED$/    \1/' | sort -u
    fi
    if grep -qE '^error: [0-9]+ targets? failed:' "$TEST_LOG"; then
      echo "  failed test targets (including doc-tests and targets that did not build):"
      awk '/^error: [0-9]+ targets? failed:/ {f = 1; next} f && /^    `/ {print "  " $0; next} {f = 0}' "$TEST_LOG"
    fi
  fi
  if grep -q '^waddle-acceptance: SKIPPED' "$NOTICE_LOG" 2>/dev/null; then
    echo
    echo "  acceptance steps skipped (reported by the harness):"
    grep '^waddle-acceptance: SKIPPED' "$NOTICE_LOG" | sed 's/^waddle-acceptance: SKIPPED /    /' | sort -u
  fi
  if [ -s "$NOTICE_LOG" ]; then
    echo "  all acceptance notices (figures, skips, kept dirs): $NOTICE_LOG"
  fi
  if grep -q 'work dir kept at' "$TEST_LOG" 2>/dev/null; then
    echo
    echo "  kept acceptance work dirs (logs inside):"
    grep -o 'work dir kept at .*' "$TEST_LOG" | sort -u | sed 's/^/    /'
  fi
  echo
  echo "  total time: $(($(date +%s) - STARTED))s"
  if [ "$rc" -eq 0 ]; then echo "  RESULT: PASS"; else echo "  RESULT: FAIL (exit $rc)"; fi
  echo "============================================================="
  if [ -s "$TEST_LOG" ] && [ -n "${passed:-}" ]; then
    # plain closing line: N passed, N failed, N skipped
    echo "summary: $passed passed, $failed failed, $ignored skipped"
  fi
  exit "$rc"
}
trap summary EXIT

stage() {
  local name=$1
  shift
  CURRENT=$name
  echo
  echo "==> $name"
  local t0
  t0=$(date +%s)
  "$@"
  STAGES+=("ok      $name ($(($(date +%s) - t0))s)")
  CURRENT=""
}

ensure_components() {
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if [ "${#missing[@]}" -gt 0 ]; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "${missing[@]}"
    else
      echo "missing cargo components (${missing[*]}) and no rustup to install them" >&2
      return 1
    fi
  fi
}

install_deps() {
  local out
  if [ "${CI:-}" = "true" ] && [ -z "${WADDLE_CACHE_DIR:-}" ]; then
    # CI proves the install step works from nothing: the pinned CLI is fetched into an empty
    # cache directory every run (the harness finds it through WADDLE_CACHE_DIR).
    WADDLE_CACHE_DIR=$(mktemp -d)
    export WADDLE_CACHE_DIR
    echo "CI: installing the pinned CLI into an empty cache directory $WADDLE_CACHE_DIR"
  fi
  out=$(bash scripts/install-test-deps.sh)
  echo "pinned terraform: $(printf '%s\n' "$out" | tail -n 1)"
}

build_provider() {
  cargo build --release -p terraform-provider-waddle --bin terraform-provider-waddle
  PROVIDER_BIN="$TARGET_DIR/release/terraform-provider-waddle"
  if [ ! -x "$PROVIDER_BIN" ]; then
    echo "release provider binary not found at $PROVIDER_BIN" >&2
    return 1
  fi
  ls -l "$PROVIDER_BIN"
}

run_tests() {
  # The acceptance harness installs exactly this binary into its filesystem mirror.
  WADDLE_PROVIDER_BIN="$PROVIDER_BIN" WADDLE_ACC_NOTICE_LOG="$NOTICE_LOG" \
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$TEST_LOG"
}

stage "install test dependencies" install_deps
stage "rust components (rustfmt, clippy)" ensure_components
stage "cargo fmt --all -- --check" cargo fmt --all -- --check
stage "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
stage "cargo build --release -p terraform-provider-waddle" build_provider
stage "cargo test --workspace" run_tests "$@"
