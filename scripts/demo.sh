#!/usr/bin/env bash
# The README's first command: build the provider (release), install it into a filesystem mirror,
# and apply an example through the real CLI in a temp work dir, then show `terraform output`.
#
#   scripts/demo.sh [--destroy] [EXAMPLE_DIR]      (default: examples/sandbox)
#
# CLI: TF_ACC_TERRAFORM_PATH, else `tofu` on PATH, else the pinned Terraform 1.0.3 (installed by
# scripts/install-test-deps.sh when missing) — the same order as the acceptance harness.
# Sandbox: the local PVE/Talos emulation (`waddle-sandbox`, loopback only) is started and its
# PROXMOX_VE_* variables exported for the provider. WADDLE_DEMO_SANDBOX=auto (default) goes on
# without it only if it cannot start and the example uses offline features alone (no
# `resource "waddle_...` or `module` block); =always requires it; =never skips it. With the
# sandbox, the example is destroyed at the end (the emulator's state ends with this script).
# The work dir is kept (printed at the end) unless --destroy; WADDLE_DEMO_DIR chooses it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

DESTROY=0
EXAMPLE=examples/sandbox
for arg in "$@"; do
  case "$arg" in
    --destroy) DESTROY=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) EXAMPLE=$arg ;;
  esac
done
EXAMPLE_DIR=$(cd "$EXAMPLE" && pwd)
NAME=$(basename "$EXAMPLE_DIR")

say() { printf '\n==> %s\n' "$*"; }

# --- the CLI ---------------------------------------------------------------------------------
if [ -n "${TF_ACC_TERRAFORM_PATH:-}" ]; then
  TF=$TF_ACC_TERRAFORM_PATH
elif command -v tofu >/dev/null 2>&1; then
  TF=$(command -v tofu)
else
  TF="${WADDLE_CACHE_DIR:-$HOME/.cache/waddle}/terraform-1.0.3/terraform"
  if [ ! -x "$TF" ]; then
    say "installing the pinned Terraform (scripts/install-test-deps.sh)"
    TF=$(bash scripts/install-test-deps.sh | tail -n 1)
  fi
fi
say "CLI: $("$TF" version | head -n 1) ($TF)"

# --- the provider ----------------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
# A binary is rebuilt only when a source it is built from is newer than it: `cargo build -p X`
# resolves features apart from the test command's `cargo test --workspace`, so asking cargo
# would recompile dozens of crates the test command already built into the same binary.
up_to_date() {
  local bin=$1
  shift
  [ -x "$bin" ] || return 1
  [ -z "$(find Cargo.toml Cargo.lock "$@" -newer "$bin" \
    \( -name '*.rs' -o -name '*.proto' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) \
    -print -quit 2>/dev/null)" ]
}
PROVIDER_BIN="$TARGET_DIR/release/terraform-provider-waddle"
if up_to_date "$PROVIDER_BIN" proto provider; then
  say "terraform-provider-waddle (release) is up to date: $PROVIDER_BIN"
else
  say "building terraform-provider-waddle (release)"
  cargo build --release -p terraform-provider-waddle --bin terraform-provider-waddle
fi

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64|arm64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac

if [ -n "${WADDLE_DEMO_DIR:-}" ]; then
  WORK=$WADDLE_DEMO_DIR
  OWN_WORK=0
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/waddle-demo.XXXXXX")
  OWN_WORK=1
fi
MIRROR="$WORK/mirror"
for host in registry.terraform.io registry.opentofu.org; do
  dest="$MIRROR/$host/waddle-social/waddle/$VERSION/${OS}_$ARCH"
  mkdir -p "$dest"
  install -m 0755 "$PROVIDER_BIN" "$dest/terraform-provider-waddle_v$VERSION"
done

# The example keeps its place relative to modules/ so `../../modules/...` sources resolve.
DIR="$WORK/examples/$NAME"
mkdir -p "$DIR"
find "$EXAMPLE_DIR" -maxdepth 1 -type f ! -name 'terraform.tfstate*' ! -name '.terraform.lock.hcl' \
  -exec cp {} "$DIR/" \;
[ -e "$WORK/modules" ] || ln -s "$ROOT/modules" "$WORK/modules"

printf '# isolated CLI configuration for the waddle demo\n' >"$WORK/cli.tfrc"
export TF_CLI_CONFIG_FILE="$WORK/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
unset TF_PLUGIN_CACHE_DIR

# --- the sandbox (local Proxmox VE / Talos emulation) ----------------------------------------
SANDBOX_PID=""
cleanup() {
  if [ -n "$SANDBOX_PID" ]; then
    kill "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Start the sandbox and export its PROXMOX_VE_* variables; returns non-zero if it cannot.
start_sandbox() {
  [ -f acceptance-tests/src/bin/waddle-sandbox.rs ] || { echo "no waddle-sandbox in this checkout" >&2; return 1; }
  say "starting waddle-sandbox (loopback only)"
  if up_to_date "$TARGET_DIR/debug/waddle-sandbox" proto provider acceptance-tests; then
    echo "waddle-sandbox is up to date: $TARGET_DIR/debug/waddle-sandbox"
  else
    cargo build -p waddle-acceptance --bin waddle-sandbox || return 1
  fi
  local env_file="$WORK/sandbox.env"
  rm -f "$env_file"
  "$TARGET_DIR/debug/waddle-sandbox" --env-file "$env_file" >"$WORK/sandbox.log" 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 1 300); do
    [ -s "$env_file" ] && break
    if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
      wait "$SANDBOX_PID" 2>/dev/null || true
      SANDBOX_PID=""
      echo "waddle-sandbox exited before it was ready; log ($WORK/sandbox.log):" >&2
      tail -n 20 "$WORK/sandbox.log" >&2
      return 1
    fi
    sleep 0.2
  done
  if [ ! -s "$env_file" ]; then
    echo "waddle-sandbox did not become ready within 60s" >&2
    return 1
  fi
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
  # The sandbox names a PEM file; hand the provider the PEM itself (works whether or not the
  # provider also accepts a path).
  if [ -n "${PROXMOX_VE_CA_CERT:-}" ] && [ -f "$PROXMOX_VE_CA_CERT" ]; then
    PROXMOX_VE_CA_CERT=$(cat "$PROXMOX_VE_CA_CERT")
    export PROXMOX_VE_CA_CERT
  fi
  echo "sandbox: PROXMOX_VE_ENDPOINT=${PROXMOX_VE_ENDPOINT:-?} node=${PROXMOX_VE_NODE:-?} (log: $WORK/sandbox.log)"
}

# Does the example manage Proxmox objects (resources or modules), or only offline features?
needs_sandbox=0
if grep -qE '^\s*(resource\s+"waddle_|module\s+")' "$DIR"/*.tf 2>/dev/null; then needs_sandbox=1; fi
case "${WADDLE_DEMO_SANDBOX:-auto}" in
  never) ;;
  always) start_sandbox ;;
  auto)
    if ! start_sandbox; then
      cleanup
      SANDBOX_PID=""
      if [ "$needs_sandbox" = 1 ]; then
        echo "$NAME manages Proxmox objects and needs the sandbox" >&2
        exit 1
      fi
      echo "note: continuing without the sandbox: $NAME uses only offline features" >&2
    fi
    ;;
  *) echo "WADDLE_DEMO_SANDBOX must be auto, always or never" >&2; exit 2 ;;
esac

# --- init / apply / output -------------------------------------------------------------------
cd "$DIR"
say "$NAME: init -plugin-dir=$MIRROR"
"$TF" init -input=false -no-color -plugin-dir="$MIRROR"
say "$NAME: apply"
"$TF" apply -input=false -no-color -auto-approve
say "$NAME: output"
"$TF" output -no-color
if [ "$DESTROY" = 1 ] || [ -n "$SANDBOX_PID" ]; then
  # The sandbox lives only as long as this script: leave nothing behind that points at it.
  say "$NAME: destroy"
  "$TF" destroy -input=false -no-color -auto-approve
  if [ "$OWN_WORK" = 1 ]; then
    rm -rf "$WORK"
    echo "work dir removed"
  fi
else
  say "done"
  echo "work dir: $DIR"
  echo "  inspect:  cd $DIR && TF_CLI_CONFIG_FILE=$WORK/cli.tfrc $TF output -json"
  echo "  clean up: cd $DIR && TF_CLI_CONFIG_FILE=$WORK/cli.tfrc $TF destroy -auto-approve && rm -rf $WORK"
fi
