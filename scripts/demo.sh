#!/usr/bin/env bash
# The README's first command: build the provider (release) if its sources changed, start the local
# Proxmox VE / Talos sandbox, apply an example through the real CLI, and say what to do next.
#
#   scripts/demo.sh [--keep] [--destroy] [EXAMPLE_DIR]     (default: examples/waddle-social)
#
#   --keep     leave the sandbox and the applied stack running: kubeconfig and talosconfig are
#              written to the work dir, `source <work dir>/env.sh` points tofu/terraform, kubectl
#              and talosctl at them, and `<work dir>/cleanup.sh` destroys the stack, stops the
#              sandbox and removes the work dir.
#   --destroy  (without the sandbox) destroy the example at the end and remove the work dir.
#
# Without --keep, a stack applied to the sandbox is destroyed at the end (the emulator's state
# lives only as long as the sandbox). The destroy's plan (it lists every attribute, certificates
# included) goes to a log file, never to the terminal. EXAMPLE_DIR/sandbox.tfvars, when present,
# is passed with -var-file on the sandbox, which listens on WADDLE_DEMO_LISTEN (default
# 127.10.0.1:8006, the endpoint sandbox.tfvars names; when that port is taken, any free port and
# -var proxmox_endpoint=<it>).
#
# CLI: TF_ACC_TERRAFORM_PATH, else `tofu` on PATH, else the pinned Terraform 1.0.3 (installed by
# scripts/install-test-deps.sh when missing) — the same order as the acceptance harness.
# Sandbox: WADDLE_DEMO_SANDBOX=auto (default) goes on without it only if it cannot start and the
# example uses offline features alone (no `resource "waddle_...` or `module` block); =always
# requires it; =never skips it. WADDLE_DEMO_DIR chooses the work dir (default: a new temp dir).
# Binaries (the release provider, the debug waddle-sandbox) are rebuilt only when a source file
# they were built from is newer than they are.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

DESTROY=0
KEEP=0
EXAMPLE=examples/waddle-social
for arg in "$@"; do
  case "$arg" in
    --destroy) DESTROY=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) EXAMPLE=$arg ;;
  esac
done
if [ "$KEEP" = 1 ] && [ "$DESTROY" = 1 ]; then
  echo "--keep and --destroy contradict each other" >&2
  exit 2
fi
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
TF_VERSION=$("$TF" version 2>/dev/null || true)
say "CLI: ${TF_VERSION%%$'\n'*} ($TF)"

# --- binaries --------------------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac

# Is a binary newer than every source it was built from? The sources are the ones cargo recorded
# in the binary's dep-info file (`<bin>.d`: every .rs file of the crate and of its path
# dependencies), plus the protocol files, the manifests and Cargo.lock. Asking cargo instead
# would rebuild: `cargo build -p X` resolves features apart from the test command's
# `cargo test --workspace` and recompiles dozens of crates into an identical binary.
up_to_date() {
  local bin=$1 dep="$1.d" f
  [ -x "$bin" ] && [ -f "$dep" ] || return 1
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    case "$f" in "$TARGET_DIR"/*) continue ;; esac # generated files (build scripts' OUT_DIR)
    if [ ! -e "$f" ] || [ "$f" -nt "$bin" ]; then return 1; fi
  done < <(sed -e 's/^[^:]*: *//' -e 's/\\$//' "$dep" | tr ' ' '\n')
  [ -z "$(find Cargo.toml Cargo.lock proto provider/*/Cargo.toml provider/*/build.rs \
    acceptance-tests/Cargo.toml -newer "$bin" -print -quit 2>/dev/null)" ]
}
# Build a binary unless it is up to date; a build that changed nothing leaves the binary's mtime
# alone, so mark it current afterwards (cargo itself judged it fresh).
ensure_built() {
  local bin=$1
  shift
  if up_to_date "$bin"; then
    echo "up to date: $bin"
    return 0
  fi
  say "building $(basename "$bin")"
  "$@" || return 1
  touch "$bin"
}

PROVIDER_BIN="$TARGET_DIR/release/terraform-provider-waddle"
ensure_built "$PROVIDER_BIN" cargo build --release -p terraform-provider-waddle --bin terraform-provider-waddle

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64|arm64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac

# The work dir holds the state, the sandbox's token and the cluster credentials: owner only.
umask 077
if [ -n "${WADDLE_DEMO_DIR:-}" ]; then
  WORK=$WADDLE_DEMO_DIR
  OWN_WORK=0
  mkdir -p "$WORK"
  WORK=$(cd "$WORK" && pwd)
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
  ! -name 'terraform.tfvars' -exec cp {} "$DIR/" \;
[ -e "$WORK/modules" ] || ln -s "$ROOT/modules" "$WORK/modules"

printf '# isolated CLI configuration for the waddle demo\n' >"$WORK/cli.tfrc"
export TF_CLI_CONFIG_FILE="$WORK/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
unset TF_PLUGIN_CACHE_DIR

# --- the sandbox (local Proxmox VE / Talos emulation) ----------------------------------------
SANDBOX_PID=""
SANDBOX_ENV="$WORK/sandbox.env"
stop_sandbox() {
  if [ -n "$SANDBOX_PID" ]; then
    kill "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    SANDBOX_PID=""
  fi
}
trap stop_sandbox EXIT

# Export the sandbox's PROXMOX_VE_* variables, with the CA as PEM text (works whether or not the
# provider also accepts a path).
load_sandbox_env() {
  set -a
  # shellcheck disable=SC1090
  . "$SANDBOX_ENV"
  set +a
  if [ -n "${PROXMOX_VE_CA_CERT:-}" ] && [ -f "$PROXMOX_VE_CA_CERT" ]; then
    PROXMOX_VE_CA_CERT=$(cat "$PROXMOX_VE_CA_CERT")
    export PROXMOX_VE_CA_CERT
  fi
}

# Start the sandbox and export its PROXMOX_VE_* variables; returns non-zero if it cannot.
start_sandbox() {
  [ -f acceptance-tests/src/bin/waddle-sandbox.rs ] || { echo "no waddle-sandbox in this checkout" >&2; return 1; }
  say "starting waddle-sandbox (loopback only)"
  local bin="$TARGET_DIR/debug/waddle-sandbox"
  ensure_built "$bin" cargo build -p waddle-acceptance --bin waddle-sandbox || return 1
  local listen
  for listen in "${WADDLE_DEMO_LISTEN:-127.10.0.1:8006}" 127.10.0.1:0; do
    rm -f "$SANDBOX_ENV"
    # Its own session: with --keep it outlives this script and the terminal it ran in.
    setsid "$bin" --env-file "$SANDBOX_ENV" --listen "$listen" </dev/null >"$WORK/sandbox.log" 2>&1 &
    SANDBOX_PID=$!
    for _ in $(seq 1 300); do
      [ -s "$SANDBOX_ENV" ] && break
      if ! kill -0 "$SANDBOX_PID" 2>/dev/null; then
        wait "$SANDBOX_PID" 2>/dev/null || true
        SANDBOX_PID=""
        break
      fi
      sleep 0.2
    done
    [ -n "$SANDBOX_PID" ] && break
    echo "waddle-sandbox could not start on $listen; log ($WORK/sandbox.log):" >&2
    tail -n 5 "$WORK/sandbox.log" >&2
    [ "$listen" = 127.10.0.1:0 ] && return 1
  done
  if [ ! -s "$SANDBOX_ENV" ]; then
    echo "waddle-sandbox did not become ready within 60s" >&2
    return 1
  fi
  load_sandbox_env
  echo "sandbox: PROXMOX_VE_ENDPOINT=${PROXMOX_VE_ENDPOINT:-?} node=${PROXMOX_VE_NODE:-?} pid=$SANDBOX_PID (log: $WORK/sandbox.log)"
}

# Does the example manage Proxmox objects (resources or modules), or only offline features?
needs_sandbox=0
if grep -qE '^\s*(resource\s+"waddle_|module\s+")' "$DIR"/*.tf 2>/dev/null; then needs_sandbox=1; fi
case "${WADDLE_DEMO_SANDBOX:-auto}" in
  never) ;;
  always) start_sandbox ;;
  auto)
    if ! start_sandbox; then
      stop_sandbox
      if [ "$needs_sandbox" = 1 ]; then
        echo "$NAME manages Proxmox objects and needs the sandbox" >&2
        exit 1
      fi
      echo "note: continuing without the sandbox: $NAME uses only offline features" >&2
    fi
    ;;
  *) echo "WADDLE_DEMO_SANDBOX must be auto, always or never" >&2; exit 2 ;;
esac

VAR_ARGS=()
if [ -n "$SANDBOX_PID" ] && [ -f "$DIR/sandbox.tfvars" ]; then
  VAR_ARGS=(-var-file=sandbox.tfvars)
  # The sandbox on another port than the one sandbox.tfvars names: say where it is.
  if grep -q '^proxmox_endpoint' "$DIR/sandbox.tfvars" &&
    ! grep -q "^proxmox_endpoint *= *\"$PROXMOX_VE_ENDPOINT\"" "$DIR/sandbox.tfvars"; then
    VAR_ARGS+=(-var "proxmox_endpoint=$PROXMOX_VE_ENDPOINT")
  fi
fi

# Destroy with the plan in a log file: the plan lists every attribute of every resource
# (certificates, rendered configurations), which has no place on a terminal.
quiet_destroy() {
  local log="$WORK/destroy.log"
  if "$TF" destroy -input=false -no-color -auto-approve "${VAR_ARGS[@]}" >"$log" 2>&1; then
    grep -E '^(Destroy complete|No changes)' "$log" || echo "destroyed"
    return 0
  fi
  echo "destroy failed; the errors (full log: $log):" >&2
  grep -A 8 -E '^(Error|│ Error)' "$log" >&2 || tail -n 5 "$log" >&2
  return 1
}

# --- init / apply ------------------------------------------------------------------------------
cd "$DIR"
say "$NAME: init -plugin-dir=$MIRROR"
"$TF" init -input=false -no-color -plugin-dir="$MIRROR" >"$WORK/init.log" 2>&1 || {
  cat "$WORK/init.log" >&2
  exit 1
}
echo "initialized (log: $WORK/init.log)"
say "$NAME: apply ${VAR_ARGS[*]}"
"$TF" apply -input=false -no-color -auto-approve "${VAR_ARGS[@]}"

# --- what next -------------------------------------------------------------------------------
# An output of the example, or nothing when it has none by that name.
out() { "$TF" output -no-color -raw "$1" 2>/dev/null || true; }
OUTPUTS=$("$TF" output -no-color -json 2>/dev/null || echo '{}')
has_output() { printf '%s' "$OUTPUTS" | grep -q "\"$1\": *{"; }

# The env file for exploring: the CLI configuration, the sandbox and the credentials.
write_env() {
  {
    echo "# source this file to reach the waddle demo's stack ($DIR)"
    echo "export TF_CLI_CONFIG_FILE='$WORK/cli.tfrc' TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1"
    if [ -n "$SANDBOX_PID" ]; then
      echo "set -a; . '$SANDBOX_ENV'; set +a"
      echo "PROXMOX_VE_CA_CERT=\$(cat \"\$PROXMOX_VE_CA_CERT\"); export PROXMOX_VE_CA_CERT"
    fi
    if [ "${#VAR_ARGS[@]}" -gt 0 ]; then
      # The CLI splits TF_CLI_ARGS_<command> at spaces (no argument here has one).
      local cmd args
      args=$(printf '%q' "${VAR_ARGS[*]}")
      for cmd in plan apply destroy refresh import console; do
        echo "export TF_CLI_ARGS_$cmd=$args"
      done
    fi
    [ -f "$WORK/kubeconfig" ] && echo "export KUBECONFIG='$WORK/kubeconfig'"
    [ -f "$WORK/talosconfig" ] && echo "export TALOSCONFIG='$WORK/talosconfig'"
    echo "cd '$DIR'"
  } >"$WORK/env.sh"
}

write_cleanup() {
  {
    echo "#!/usr/bin/env bash"
    echo "# Destroy the waddle demo's stack, stop its sandbox and remove the work dir."
    echo "set -euo pipefail"
    echo ". '$WORK/env.sh'"
    echo "if '$TF' destroy -input=false -no-color -auto-approve >'$WORK/destroy.log' 2>&1; then"
    echo "  grep -E '^(Destroy complete|No changes)' '$WORK/destroy.log' || echo destroyed"
    echo "else"
    echo "  echo 'destroy failed; full log: $WORK/destroy.log' >&2"
    echo "  grep -A 8 -E '^(Error|│ Error)' '$WORK/destroy.log' >&2 || true"
    echo "  exit 1"
    echo "fi"
    if [ -n "$SANDBOX_PID" ]; then
      echo "kill $SANDBOX_PID 2>/dev/null && echo 'sandbox stopped (pid $SANDBOX_PID)' || true"
    fi
    if [ "$OWN_WORK" = 1 ]; then
      echo "cd / && rm -rf '$WORK' && echo 'work dir removed'"
    fi
  } >"$WORK/cleanup.sh"
  chmod 0700 "$WORK/cleanup.sh"
}

next_steps() {
  say "what next"
  local url="" host name
  for name in teleport_web_url web_url; do
    if has_output "$name"; then
      url=$(out "$name")
      break
    fi
  done
  if [ -n "$url" ]; then
    host=${url#https://}
    host=${host%%/*}
    echo "Teleport:    $url"
    echo "  log in:    open it and choose GitHub (members of the teams in teams_to_roles), or"
    echo "             tsh login --proxy=$host:443 --auth=github && tsh kube ls && tsh apps ls"
    if [ -n "$SANDBOX_PID" ]; then
      echo "             (on the sandbox Teleport is emulated and the name does not resolve: the"
      echo "             login needs a real host, DNS records and a GitHub OAuth app)"
    fi
  fi
  if [ "$KEEP" = 1 ] || { [ -z "$SANDBOX_PID" ] && [ "$DESTROY" = 0 ]; }; then
    if has_output kubeconfig; then
      out kubeconfig >"$WORK/kubeconfig"
      echo "kubeconfig:  $WORK/kubeconfig   (kubectl --kubeconfig $WORK/kubeconfig get --raw /readyz)"
    fi
    if has_output talosconfig; then
      out talosconfig >"$WORK/talosconfig"
      echo "talosconfig: $WORK/talosconfig   (talosctl --talosconfig $WORK/talosconfig version)"
    fi
    write_env
    write_cleanup
    echo "explore:     source $WORK/env.sh && $TF plan   (the CLI, kubectl and talosctl set up)"
    if [ -n "$SANDBOX_PID" ]; then
      echo "sandbox:     pid $SANDBOX_PID, $PROXMOX_VE_ENDPOINT (log: $WORK/sandbox.log)"
    fi
    echo "clean up:    $WORK/cleanup.sh   (destroy, stop the sandbox, remove the work dir)"
  else
    echo "kubeconfig, talosconfig: run again with --keep to keep the stack and get them as files"
  fi
}

next_steps

if [ "$KEEP" = 1 ]; then
  SANDBOX_PID="" # the sandbox keeps running; cleanup.sh stops it
  exit 0
fi
if [ "$DESTROY" = 1 ] || [ -n "$SANDBOX_PID" ]; then
  # The sandbox lives only as long as this script: leave nothing behind that points at it.
  say "$NAME: destroy (plan logged, not shown)"
  quiet_destroy
  if [ "$OWN_WORK" = 1 ]; then
    cd /
    rm -rf "$WORK"
    echo "work dir removed"
  fi
fi
