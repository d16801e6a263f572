#!/usr/bin/env bash
# Builds a registry-ready release of terraform-provider-waddle:
#
#   scripts/release.sh VERSION [OUT_DIR]        (OUT_DIR defaults to dist/VERSION)
#
# writes, for every target this toolchain has installed (rustup target list --installed):
#   terraform-provider-waddle_VERSION_OS_ARCH.zip   holding terraform-provider-waddle_vVERSION
#   terraform-provider-waddle_VERSION_manifest.json (protocol_versions ["6.0"]: without it the
#                                                    OpenTofu registry assumes protocol 5)
#   terraform-provider-waddle_VERSION_SHA256SUMS    (every zip and the manifest)
#   terraform-provider-waddle_VERSION_SHA256SUMS.sig (detached binary GPG signature)
#
# This is the layout the Terraform and OpenTofu registries read from a GitHub release.
# Targets this machine cannot build (darwin, windows, arm64) are built by
# .github/workflows/release.yml.
#
# Environment:
#   GPG_FINGERPRINT          key to sign with (from the default or $GNUPGHOME keyring; the
#                            registries accept RSA and DSA keys, not ECC); required
#                            unless WADDLE_RELEASE_UNSIGNED=1 (a local, unsigned build)
#   WADDLE_RELEASE_BIN       package this already-built binary for the host target instead of
#                            building (the tests use the binary the test command built)
#   CARGO_TARGET_DIR         honoured
set -euo pipefail

usage() { echo "usage: $0 VERSION [OUT_DIR]   (VERSION like 0.2.0, no leading v)" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
VERSION=$1
if ! [[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "release: VERSION must be semantic (MAJOR.MINOR.PATCH[-PRE]) without a leading v, got '$VERSION'" >&2
  exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
OUT=${2:-$ROOT/dist/$VERSION}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
NAME=terraform-provider-waddle

if [ "${WADDLE_RELEASE_UNSIGNED:-}" != 1 ] && [ -z "${GPG_FINGERPRINT:-}" ]; then
  echo "release: set GPG_FINGERPRINT to the signing key (or WADDLE_RELEASE_UNSIGNED=1 for a local build)" >&2
  exit 2
fi

# Rust target triple -> registry OS_ARCH.
os_arch() {
  case "$1" in
    x86_64-unknown-linux-gnu | x86_64-unknown-linux-musl) echo linux_amd64 ;;
    aarch64-unknown-linux-gnu | aarch64-unknown-linux-musl) echo linux_arm64 ;;
    x86_64-apple-darwin) echo darwin_amd64 ;;
    aarch64-apple-darwin) echo darwin_arm64 ;;
    x86_64-pc-windows-msvc | x86_64-pc-windows-gnu) echo windows_amd64 ;;
    *) return 1 ;;
  esac
}

HOST=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p "$OUT"
rm -f "$OUT/${NAME}_${VERSION}_"*
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

built=()
declare -A seen=()
for triple in $(rustup target list --installed 2>/dev/null || echo "$HOST"); do
  pair=$(os_arch "$triple") || { echo "release: skipping $triple (no registry platform name)" >&2; continue; }
  [ -z "${seen[$pair]:-}" ] || continue
  if [ -n "${WADDLE_RELEASE_BIN:-}" ]; then
    [ "$triple" = "$HOST" ] || continue
    bin=$WADDLE_RELEASE_BIN
  else
    cargo build --release --locked -p $NAME --bin $NAME --target "$triple" >&2
    bin="$TARGET_DIR/$triple/release/$NAME"
    case "$pair" in windows_*) bin="$bin.exe" ;; esac
  fi
  [ -x "$bin" ] || { echo "release: no binary at $bin" >&2; exit 1; }
  exe="${NAME}_v${VERSION}"
  case "$pair" in windows_*) exe="$exe.exe" ;; esac
  mkdir -p "$stage/$pair"
  cp "$bin" "$stage/$pair/$exe"
  zip="$OUT/${NAME}_${VERSION}_${pair}.zip"
  # Deterministic archive: fixed timestamp, one member, mode 0755.
  python3 - "$stage/$pair/$exe" "$exe" "$zip" <<'PY'
import sys, zipfile
src, member, dst = sys.argv[1:4]
info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 << 16)
info.compress_type = zipfile.ZIP_DEFLATED
info.create_system = 3
with open(src, "rb") as f, zipfile.ZipFile(dst, "w") as z:
    z.writestr(info, f.read())
PY
  seen[$pair]=1
  built+=("$pair")
  echo "release: $zip" >&2
done
[ "${#built[@]}" -gt 0 ] || { echo "release: nothing built (no usable target installed)" >&2; exit 1; }

manifest="$OUT/${NAME}_${VERSION}_manifest.json"
cp "$ROOT/terraform-registry-manifest.json" "$manifest"

sums="$OUT/${NAME}_${VERSION}_SHA256SUMS"
(cd "$OUT" && sha256sum "${NAME}_${VERSION}_"*.zip "$(basename "$manifest")" >"$(basename "$sums")")

if [ "${WADDLE_RELEASE_UNSIGNED:-}" = 1 ]; then
  echo "release: WADDLE_RELEASE_UNSIGNED=1: no signature (a registry will not accept this release)" >&2
else
  gpg --batch --yes --local-user "$GPG_FINGERPRINT" --output "$sums.sig" --detach-sign "$sums"
fi

echo "release $VERSION (${built[*]}) in $OUT:" >&2
ls -1 "$OUT" >&2
echo "$OUT"
