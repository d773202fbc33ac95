#!/usr/bin/env bash
# Build every function as a Lambda bootstrap (`make release`; `make package` starts with it):
# release profile, cargo-lambda, one build for all of functions/*.
#
# ARCH=host (the default: this machine's, so the bench and the benchmarks can run them) | arm64 |
# x86_64 | auto (arm64, installing the Rust target aarch64-unknown-linux-gnu with rustup when it is
# missing; x86_64, saying so, when that fails: what `make package` builds). arm64 on an x86_64 machine needs that target (`rustup
# target add aarch64-unknown-linux-gnu`); cargo-lambda links through zig (the ziglang wheel in the
# venv) for both, against an older glibc than provided.al2023's.
#
# Where: this machine's architecture at ${CARGO_TARGET_DIR:-target}/lambda/<binary>/bootstrap,
# cargo-lambda's standard place; the other one at target/lambda-<arch>/<binary>/bootstrap, so an
# arm64 build for packaging never replaces the binaries the bench runs.
# `release.sh --print-dir` prints that directory for ARCH and builds nothing.
# PACKAGE_VENV: the venv with cargo-lambda and ziglang (`make release` builds it).
set -euo pipefail
cd "$(dirname "$0")/.."

package_venv=${PACKAGE_VENV:-.venv/package}
arch=${ARCH:-host}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case $(uname -m) in
  x86_64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch=$(uname -m) ;;
esac

arm64_target=aarch64-unknown-linux-gnu
arm64_installed() { rustup target list --installed 2>/dev/null | grep -qx "$arm64_target"; }

case $arch in
  host) arch=$host_arch ;;
  auto)
    # The template asks for arm64 (Graviton): fetch the target when it is missing (rustup, from
    # static.rust-lang.org); where that cannot be done, build x86_64 and say so.
    if [[ $host_arch != arm64 ]] && ! arm64_installed; then
      echo "release: installing the Rust target $arm64_target (rustup target add)" >&2
      timeout 300 rustup target add "$arm64_target" >&2 || true
    fi
    if [[ $host_arch == arm64 ]] || arm64_installed; then
      arch=arm64
    else
      arch=x86_64
      echo "release: the Rust target $arm64_target is not installed, so building x86_64" \
        "(for arm64: rustup target add $arm64_target, then ARCH=arm64)" >&2
    fi
    ;;
  arm64)
    # cargo-lambda would try to install the target itself, which hangs without network.
    [[ $host_arch == arm64 ]] || arm64_installed || {
      echo "release: ARCH=arm64 needs the Rust target $arm64_target: rustup target add $arm64_target" >&2
      exit 2
    }
    ;;
  x86_64) ;;
  *)
    echo "release: ARCH must be host, arm64, x86_64 or auto, not $arch" >&2
    exit 2
    ;;
esac

lambda_dir=$target_dir/lambda
[[ $arch == "$host_arch" ]] || lambda_dir=$target_dir/lambda-$arch
if [[ ${1:-} == --print-dir ]]; then
  echo "$lambda_dir"
  exit 0
fi
[[ -x $package_venv/bin/cargo-lambda ]] || {
  echo "release: $package_venv/bin/cargo-lambda is missing: run make release" >&2
  exit 2
}

# One -p per function crate (functions/<name>/Cargo.toml), so a new function is built without
# editing this list; scripts/package.py fails if the template names a binary that is not built.
packages=()
for manifest in functions/*/Cargo.toml; do
  packages+=(-p "$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)")
done

flag=--x86-64
[[ $arch == arm64 ]] && flag=--arm64
echo "release: cargo lambda build --release $flag ${packages[*]} (into $lambda_dir)"
start=$SECONDS
# --disable-optimizations: the workspace's [profile.release] alone decides how the binaries are
# built (it keeps panic = "unwind", so a panic becomes a FAILED answer to CloudFormation).
PATH="$PWD/$package_venv/bin:$PATH" cargo lambda build --release --disable-optimizations \
  --lambda-dir "$lambda_dir" "$flag" "${packages[@]}"
echo "release: built for $arch in $((SECONDS - start)) s:"
for bootstrap in "$lambda_dir"/*/bootstrap; do
  printf '  %-60s %9d bytes\n' "$bootstrap" "$(stat -c %s "$bootstrap")"
done
