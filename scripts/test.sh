#!/usr/bin/env bash
# THE test command (README "Run the tests"; .ci/run calls it). Works on a fresh Debian machine
# with the Rust toolchain, python3/pip and apt:
#   1. scripts/install-test-deps.sh (haproxy, cloud-init, isoinfo/xorriso, Terraform 1.0.3)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo test --workspace --no-run   (builds every test binary once), the release build of
#      the provider the real-CLI tests install (WADDLE_TEST_RELEASE=0: the test build's), doc tests
#   5. every test binary (unit, gRPC, emulator, docs-staleness and real-CLI acceptance tests),
#      and the real-CLI ones (acceptance-tests/tests/cli_*.rs) again under every other CLI found
#      (terraform / tofu on PATH, the pinned Terraform) of another version, each reported apart;
#      several binaries at a time, each in its own network namespace (scripts/run-tests.py;
#      WADDLE_TEST_JOBS=N sets how many, 1 = one after the other as `cargo test` does)
# Honours CARGO_TARGET_DIR. Any failure fails the command; a summary is printed at the end.
#
# Knobs: TF_ACC_TERRAFORM_PATH (CLI to test with; else `tofu` on PATH, else the pinned
# Terraform), WADDLE_ACC_ALL_CLIS=0 (only that CLI), WADDLE_ACC_KEEP=1 (keep acceptance work dirs), extra arguments go to
# cargo (before a `--`) and to every test binary (after it: `scripts/test.sh -- --test-threads=1`).
set -euo pipefail
# No CLI started from here or from the tests calls HashiCorp's version checkpoint.
export CHECKPOINT_DISABLE=1

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
EXTRA_LOGS=()
declare -A LABELS=()
LABELS[$TEST_LOG]="cargo test --workspace"

label_of() { echo "${LABELS[$1]:-$1}"; }

# Sums libtest's per-binary result lines of one log: "passed failed ignored".
count_results() {
  awk '
    /^test result:/ {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed;?$/)  p += $i
        if ($(i+1) ~ /^failed;?$/)  f += $i
        if ($(i+1) ~ /^ignored;?$/) g += $i
      }
    }
    END { printf "%d %d %d\n", p, f, g }' "$1"
}
STARTED=$(date +%s)
CURRENT=""

summary() {
  local rc=$?
  set +e
  echo
  echo "==================== waddle test summary ===================="
  for s in "${STAGES[@]}"; do echo "  $s"; done
  if [ -n "$CURRENT" ]; then echo "  FAILED  $CURRENT"; fi
  local passed=0 failed=0 ignored=0 any=0
  for log in "$TEST_LOG" "${EXTRA_LOGS[@]}"; do
    [ -s "$log" ] || continue
    any=1
    local p f g
    read -r p f g < <(count_results "$log")
    passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + g))
    echo
    echo "  $(label_of "$log"): $p passed, $f failed, $g ignored (log: $log)"
    if grep -qE '^test .* \.\.\. FAILED$' "$log"; then
      echo "  failed tests:"
      grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/    \1/' | sort -u
    fi
    if grep -qE '^error: [0-9]+ targets? failed:' "$log"; then
      echo "  failed test targets (including doc-tests and targets that did not build):"
      awk '/^error: [0-9]+ targets? failed:/ {f = 1; next} f && /^    `/ {print "  " $0; next} {f = 0}' "$log"
    fi
  done
  if grep -q '^waddle-acceptance: SKIPPED' "$NOTICE_LOG" 2>/dev/null; then
    echo
    echo "  acceptance steps skipped (reported by the harness):"
    grep '^waddle-acceptance: SKIPPED' "$NOTICE_LOG" | sed 's/^waddle-acceptance: SKIPPED /    /' | sort -u
  fi
  if [ -s "$NOTICE_LOG" ]; then
    echo "  all acceptance notices (figures, skips, kept dirs): $NOTICE_LOG"
  fi
  if grep -q 'work dir kept at' "$TEST_LOG" "${EXTRA_LOGS[@]}" 2>/dev/null; then
    echo
    echo "  kept acceptance work dirs (logs inside):"
    grep -ho 'work dir kept at .*' "$TEST_LOG" "${EXTRA_LOGS[@]}" 2>/dev/null | sort -u | sed 's/^/    /'
  fi
  echo
  echo "  total time: $(($(date +%s) - STARTED))s"
  if [ "$rc" -eq 0 ]; then echo "  RESULT: PASS"; else echo "  RESULT: FAIL (exit $rc)"; fi
  echo "============================================================="
  if [ "$any" = 1 ]; then
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
  local t0 rc=0
  t0=$(date +%s)
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    STAGES+=("FAILED  $name ($(($(date +%s) - t0))s)")
    CURRENT=""
    return "$rc"
  fi
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
  PINNED_TF=$(printf '%s\n' "$out" | tail -n 1)
  echo "pinned terraform: $PINNED_TF"
}

# The provider binary the real-CLI tests install: the release build (the profile that ships),
# by default. Measured on a quiet machine: cli_network took 113 s of CPU with the test build's
# binary against 57 s with the release one (Terraform starts the plugin several times per
# command), which outweighs the release build (250 s cold, a relink when warm).
# WADDLE_TEST_RELEASE=0 takes the test build's terraform-provider-waddle instead (no release
# build at all).
pick_provider() {
  if [ "${WADDLE_TEST_RELEASE:-1}" != 0 ]; then
    cargo build --release -p terraform-provider-waddle --bin terraform-provider-waddle
    PROVIDER_BIN="$TARGET_DIR/release/terraform-provider-waddle"
  else
    PROVIDER_BIN=$(python3 scripts/run-tests.py --bin-of terraform-provider-waddle "$ARTIFACTS")
  fi
  if [ -z "$PROVIDER_BIN" ] || [ ! -x "$PROVIDER_BIN" ]; then
    echo "provider binary not found: ${PROVIDER_BIN:-none in the cargo artifacts}" >&2
    return 1
  fi
  ls -l "$PROVIDER_BIN"
}

# Cargo arguments (before a `--`) and test-binary arguments (after it) of this script.
CARGO_ARGS=()
TEST_ARGS=()
split_args() {
  local seen=0 a
  for a in "$@"; do
    if [ "$seen" = 0 ] && [ "$a" = "--" ]; then
      seen=1
    elif [ "$seen" = 0 ]; then
      CARGO_ARGS+=("$a")
    else
      TEST_ARGS+=("$a")
    fi
  done
}
split_args "$@"
ARTIFACTS="$LOG_DIR/test-artifacts.json"

# Builds every test binary once; their paths are in $ARTIFACTS (cargo's JSON messages).
build_tests() {
  cargo test --workspace --no-run --message-format=json-render-diagnostics "${CARGO_ARGS[@]}" >"$ARTIFACTS"
}

run_doc_tests() {
  cargo test --workspace --doc "${CARGO_ARGS[@]}" -- "${TEST_ARGS[@]}" 2>&1 | tee -a "$TEST_LOG"
}

# Every test binary under the default CLI, and the real-CLI binaries (cli_*) again under each
# other CLI, several binaries at a time, each in its own network namespace
# (scripts/run-tests.py). The acceptance harness installs exactly $PROVIDER_BIN into its
# filesystem mirror.
run_test_binaries() {
  local suites=(--suite "$TEST_LOG") cli v log
  for cli in "${OTHER_CLIS[@]}"; do
    v=$(cli_version "$cli")
    log="$LOG_DIR/cargo-test-cli-$(printf '%s' "$v" | tr -c 'A-Za-z0-9.' '-').log"
    : >"$log"
    EXTRA_LOGS+=("$log")
    LABELS[$log]="real-CLI tests under $v ($cli)"
    suites+=(--suite "$log,only=cli_,env=TF_ACC_TERRAFORM_PATH=$cli")
  done
  WADDLE_PROVIDER_BIN="$PROVIDER_BIN" WADDLE_ACC_NOTICE_LOG="$NOTICE_LOG" \
    python3 scripts/run-tests.py --artifacts "$ARTIFACTS" --durations "$LOG_DIR/durations.json" \
    "${suites[@]}" -- "${TEST_ARGS[@]}"
}

stage "install test dependencies" install_deps
stage "rust components (rustfmt, clippy)" ensure_components
stage "cargo fmt --all -- --check" cargo fmt --all -- --check
stage "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
# The CLI the harness picks by default (its own order): TF_ACC_TERRAFORM_PATH, tofu on PATH,
# the pinned Terraform.
default_cli() {
  if [ -n "${TF_ACC_TERRAFORM_PATH:-}" ]; then
    echo "$TF_ACC_TERRAFORM_PATH"
  elif command -v tofu >/dev/null 2>&1; then
    command -v tofu
  else
    echo "$PINNED_TF"
  fi
}

# First line of `CLI version`, never failing: no pipe into `head` (under pipefail, Terraform
# 1.0.3 killed by SIGPIPE after its first line exits 255 through panicwrap and stopped this
# script), and no checkpoint call to HashiCorp.
cli_version() {
  local out
  out=$(CHECKPOINT_DISABLE=1 "$1" version 2>/dev/null) || true
  printf '%s\n' "${out%%$'\n'*}"
}

# Every other CLI on this machine (terraform and tofu on PATH, the pinned Terraform) whose
# version differs from the default's runs the real-CLI suite (acceptance-tests/tests/cli_*.rs)
# again, reported on its own line. WADDLE_ACC_ALL_CLIS=0 turns this off.
OTHER_CLIS=()
find_other_clis() {
  [ "${WADDLE_ACC_ALL_CLIS:-1}" != 0 ] || return 0
  local seen
  seen="|$(cli_version "$(default_cli)")|"
  local c v
  for c in "$PINNED_TF" "$(command -v terraform || true)" "$(command -v tofu || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    v=$(cli_version "$c")
    [ -n "$v" ] || continue
    case "$seen" in *"|$v|"*) continue ;; esac
    seen="$seen|$v|"
    OTHER_CLIS+=("$c")
  done
}

TESTS_RC=0
find_other_clis
stage "cargo test --workspace --no-run (build every test binary)" build_tests
stage "provider binary for the real-CLI tests" pick_provider
stage "doc tests" run_doc_tests || TESTS_RC=$?
ALSO=""
for cli in "${OTHER_CLIS[@]}"; do ALSO="$ALSO; real-CLI tests again under $(cli_version "$cli")"; done
stage "test binaries (CLI: $(cli_version "$(default_cli)")$ALSO)" run_test_binaries || TESTS_RC=$?
exit "$TESTS_RC"
