#!/usr/bin/env bash
# Install what bandvote needs on a fresh Debian machine, idempotently.
# Tool builds are cached under $BANDVOTE_CACHE (default $HOME/.cache/bandvote),
# so a second run takes seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0
SECANTUS_VERSION=0.5.3-beta.196

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -q '^wasm32-wasip2$'; then
  log "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

mkdir -p "$TOOLS"
# cargo install with a fixed version into our cache; a no-op when already there.
install_crate() { # crate version bin [extra args...]
  local crate=$1 version=$2 bin=$3; shift 3
  local stamp="$TOOLS/.installed-$crate-$version"
  if [ -x "$TOOLS/bin/$bin" ] && [ -f "$stamp" ]; then
    log "$crate $version: cached at $TOOLS/bin/$bin"
    return
  fi
  log "building $crate $version (cold builds take minutes; log: $CACHE/logs/install-$crate.log)"
  mkdir -p "$CACHE/logs"
  local start=$SECONDS
  CARGO_TARGET_DIR="$CACHE/tool-target/$crate" \
    cargo install "$crate" --version "$version" --locked --root "$TOOLS" "$@" \
    >"$CACHE/logs/install-$crate.log" 2>&1 || { tail -40 "$CACHE/logs/install-$crate.log"; die "cargo install $crate failed"; }
  touch "$stamp"
  rm -rf "$CACHE/tool-target/$crate"
  log "$crate $version built in $((SECONDS - start))s"
}

install_crate tansu "$TANSU_VERSION" tansu --features libsql
install_crate secantus-mdb "$SECANTUS_VERSION" secantusd-rs --ignore-rust-version
log "setup done"
