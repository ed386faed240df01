#!/usr/bin/env bash
# Install what bandvote needs on a fresh Debian machine, idempotently.
# Tool builds are cached under $BANDVOTE_CACHE (default $HOME/.cache/bandvote),
# so a second run takes seconds.
#   scripts/setup.sh             # everything the tests need (scripts/test.sh)
#   scripts/setup.sh demo        # only what scripts/demo.sh runs: the services' and the
#                                # build's packages, wasm32-wasip2, nisshi, secantusd-rs
#   scripts/setup.sh bench       # the tests' tools and a fully optimised wasmtime 42.0.2
#                                # for the Spin route (bench/run.sh)
#   scripts/setup.sh MODE packages   # only the Debian packages and the wasm target (seconds)
#   scripts/setup.sh MODE tools      # only the tool builds: two at a time (their serial
#                                    # tails leave a core idle), the longest first
# demo.sh and test.sh run `packages`, then `tools` in the background while they
# build the workspace themselves (lib.sh: start_tools / wait_tools).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MODE=${1:-test}
PHASE=${2:-all}
USAGE="usage: scripts/setup.sh [demo|test|bench] [packages|tools|all]"
case $MODE in demo | test | bench) ;; *) die "$USAGE" ;; esac
case $PHASE in packages | tools | all) ;; *) die "$USAGE" ;; esac

NISSHI_VERSION=0.8.1
NISSHI_MIN_RUSTC=1.96
SECANTUS_VERSION=0.5.3-beta.196
WAC_VERSION=0.12.0
# The wasmtimes the Spin artifact is tested on (README, "Runtimes"): the one the
# newest Spin (4.0.2) embeds, and the one SpinKube's current shim
# (containerd-shim-spin v0.24, Spin 3.6.3) embeds. Our own host's wasmtime
# (48.0.8) is a library of the workspace, not a CLI.
WASMTIME_VERSION=44.0.0
WASMTIME_SPIN_VERSION=42.0.2
MACHETE_VERSION=0.9.2

install_packages() {
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v cmake >/dev/null || need_apt+=(cmake)
command -v curl >/dev/null || need_apt+=(curl)
[ "$MODE" != demo ] && ! command -v wrk >/dev/null && need_apt+=(wrk)
if [ "$KAFKA_STORAGE" = postgres ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then need_apt+=(postgresql); fi
command -v python3 >/dev/null || need_apt+=(python3)
if [ "$MODE" != demo ]; then
  python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
  command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v node >/dev/null || need_apt+=(nodejs npm)
fi
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
}

mkdir -p "$TOOLS"
# cargo install with a fixed version into our cache; a no-op when already there.
install_crate() { # crate version bin [extra args...]   (toolchain: $INSTALL_TOOLCHAIN, default the active one; root: $INSTALL_ROOT, default $TOOLS; target dir shared with other builds: $INSTALL_TARGET, else one of its own, removed after; how long a cold build took here: $TAKES)
  local crate=$1 version=$2 bin=$3; shift 3
  local root=${INSTALL_ROOT:-$TOOLS}
  local toolchain=()
  [ -n "${INSTALL_TOOLCHAIN:-}" ] && toolchain=("+$INSTALL_TOOLCHAIN")
  local stamp="$root/.installed-$crate-$version"
  if [ -x "$root/bin/$bin" ] && [ -f "$stamp" ]; then
    log "$crate $version: cached at $root/bin/$bin"
    return
  fi
  # Logs named by the root when it is not the shared one (the bench's 42.0.2 and the tests' build at once).
  local name="$crate-$version"
  [ "$root" = "$TOOLS" ] || name=$(basename "$root")
  log "building $crate $version (cold on 2 cores: ${TAKES:-minutes}; log: $CACHE/logs/install-$name.log)"
  mkdir -p "$CACHE/logs" "$root/bin"
  local start=$SECONDS
  # A target dir and a staging root of its own: two builds run at once
  # (run_two_at_a_time) and never wait on each other's cargo locks.
  local target="$CACHE/tool-target/${INSTALL_TARGET:-$crate-$version}" staging="$root/.staging-$crate-$version"
  CARGO_TARGET_DIR="$target" \
    cargo "${toolchain[@]}" install "$crate" --version "$version" --locked --root "$staging" --timings "$@" \
    >"$CACHE/logs/install-$name.log" 2>&1 || { tail -40 "$CACHE/logs/install-$name.log"; die "cargo install $crate $version failed"; }
  cp "$staging"/bin/* "$root/bin/"
  rm -rf "$staging"
  touch "$stamp"
  # Where the build's time went (per crate), kept beside its log.
  cp "$target/cargo-timings/cargo-timing.html" "$CACHE/logs/install-$name-timings.html" 2>/dev/null || true
  [ -n "${INSTALL_TARGET:-}" ] || rm -rf "$target"
  log "$crate $version built in $((SECONDS - start))s (per-crate timings: $CACHE/logs/install-$name-timings.html)"
}

# nisshi (the Kafka broker) needs rustc >= $NISSHI_MIN_RUSTC: pick an installed
# toolchain that has it (the active one first), or say exactly what to install.
rustc_at_least() { # toolchain min
  local v; v=$(rustc "+$1" --version 2>/dev/null | awk '{print $2}' | cut -d- -f1) || return 1
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$2" "$v" | sort -V | head -1)" = "$2" ]
}
pick_toolchain() { # min
  local t
  for t in $(rustup show active-toolchain 2>/dev/null | awk '{print $1}') $(rustup toolchain list 2>/dev/null | awk '{print $1}'); do
    if rustc_at_least "$t" "$1"; then echo "$t"; return 0; fi
  done
  return 1
}
# Each tool is one job (a function); run_two_at_a_time runs them.
build_nisshi() {
  if [ -x "$TOOLS/bin/nisshi" ] && [ -f "$TOOLS/.installed-nisshi-$NISSHI_VERSION" ]; then
    log "nisshi $NISSHI_VERSION: cached at $TOOLS/bin/nisshi"
    return
  fi
  local toolchain
  toolchain=$(pick_toolchain "$NISSHI_MIN_RUSTC") || die "nisshi $NISSHI_VERSION needs rustc >= $NISSHI_MIN_RUSTC and no installed toolchain has it ($(rustup toolchain list | awk '{print $1}' | tr '\n' ' ')). Install one: rustup toolchain install nightly --profile minimal   (or: rustup update stable, once stable is >= $NISSHI_MIN_RUSTC)"
  log "nisshi needs rustc >= $NISSHI_MIN_RUSTC: building it with toolchain $toolchain ($(rustc "+$toolchain" --version))"
  # Only the storage engines we use: sqlite (libsql) and PostgreSQL. The default
  # features add dynostore (S3-style object stores), which nothing here runs.
  TAKES="about 15 min alone" INSTALL_TOOLCHAIN=$toolchain install_crate nisshi "$NISSHI_VERSION" nisshi --no-default-features --features libsql,postgres
}
build_secantus() { TAKES="about 6 min alone" install_crate secantus-mdb "$SECANTUS_VERSION" secantusd-rs --ignore-rust-version; }
# Composing the Spin artifact.
build_wac() { TAKES="about 3 min alone" install_crate wac-cli "$WAC_VERSION" wac --no-default-features; }
# The wasmtime CLIs the tests prove the Spin artifact on (serve + wasi-config
# + the pooling allocator, as Spin embeds them), one after the other in one
# target dir: the dependencies they share compile once. Only the tests run
# them: opt-level 1 (the same code, compiled with less optimisation, in less time).
WASMTIME_FEATURES=(--no-default-features --features run,serve,wasi-config,cranelift,component-model,component-model-async,pooling-allocator,cache,parallel-compilation)
build_wasmtimes() {
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 INSTALL_TARGET=wasmtime-cli TAKES="about 8 min alone" INSTALL_ROOT="$TOOLS/wasmtime-$WASMTIME_SPIN_VERSION" \
    install_crate wasmtime-cli "$WASMTIME_SPIN_VERSION" wasmtime "${WASMTIME_FEATURES[@]}"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 INSTALL_TARGET=wasmtime-cli TAKES="about 6 min alone" \
    install_crate wasmtime-cli "$WASMTIME_VERSION" wasmtime "${WASMTIME_FEATURES[@]}"
  rm -rf "$CACHE/tool-target/wasmtime-cli"
}
# The bench runs the Spin route on the shim's wasmtime fully optimised, as
# SpinKube ships it (bench/run.sh: scripts/setup.sh bench), in a root of its own.
build_wasmtime_bench() {
  TAKES="about 10 min alone" INSTALL_ROOT="$TOOLS/wasmtime-$WASMTIME_SPIN_VERSION-release" \
    install_crate wasmtime-cli "$WASMTIME_SPIN_VERSION" wasmtime "${WASMTIME_FEATURES[@]}"
}
# Unused dependencies fail scripts/test.sh (cargo machete).
build_machete() { TAKES="about 1 min alone" install_crate cargo-machete "$MACHETE_VERSION" cargo-machete; }
# Python test tools, pinned, in a venv of our own.
python_venv() {
  local venv="$CACHE/venv" reqs
  reqs="$(dirname "$0")/../tests/requirements.txt"
  if [ ! -f "$venv/.reqs" ] || ! cmp -s "$reqs" "$venv/.reqs"; then
    log "python venv for the tests ($venv)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$reqs"
    cp "$reqs" "$venv/.reqs"
  fi
}
# playwright-core for the browser tests (drives Debian's chromium; no browser
# download) and axe-core (the ballot's accessibility check).
browser_modules() {
  local dir
  dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ] || [ ! -d "$dir/node_modules/axe-core" ]; then
    log "npm ci (tests/browser)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
  fi
}

# Run the named jobs two at a time, in order (the longest first); fail if any failed.
run_two_at_a_time() {
  local job running=0 failed=0
  for job in "$@"; do
    if [ "$running" -ge 2 ]; then
      wait -n || failed=1
      running=$((running - 1))
    fi
    "$job" &
    running=$((running + 1))
  done
  while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
  done
  [ "$failed" = 0 ] || die "a tool build failed (its log is named above; all under $CACHE/logs)"
}

install_tools() {
  local start=$SECONDS
  if [ "$MODE" = demo ]; then
    run_two_at_a_time build_nisshi build_secantus
    log "tools done in $((SECONDS - start))s (demo: the test tools — wac, the wasmtime CLIs, cargo-machete, the Python venv, npm — come with scripts/setup.sh)"
  else
    local bench=()
    [ "$MODE" = bench ] && bench=(build_wasmtime_bench)
    run_two_at_a_time build_nisshi build_wasmtimes "${bench[@]}" build_secantus build_wac build_machete python_venv browser_modules
    log "tools done in $((SECONDS - start))s"
  fi
}

case $PHASE in
  packages) install_packages ;;
  tools) install_tools ;;
  all) install_packages; install_tools ;;
esac
log "setup ($MODE, $PHASE) done"
