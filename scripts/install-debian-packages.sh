#!/usr/bin/env bash
# Install the Debian packages the build and the bench need, only those missing.
# gcc builds aws-lc-sys; python3-venv gives the bench its venv (CPython from pyenv has it built in).
set -euo pipefail

need=()
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)

if ((${#need[@]})); then
  echo "installing Debian packages: ${need[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
fi
