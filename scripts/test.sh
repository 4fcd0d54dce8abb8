#!/usr/bin/env bash
# The one test command: prepares what the tests need, then runs fmt, clippy (warnings denied)
# and every test of the workspace, doctests and examples included.
#
# Backend tests start their own throwaway PostgreSQL, redis-server and three-node Redis Cluster
# on free loopback ports (or use DATABASE_URL / REDIS_URL / REDIS_CLUSTER_URLS when set); the
# browser test drives Debian's headless Chromium; promtool (Debian's `prometheus`) checks the
# metrics exposition. The fault-injection runs (benches/tests/faults.rs: 2,000 tasks per backend,
# workers killed and frozen, servers restarted) start servers of their own. On a Debian machine
# this script installs whichever of them is missing (when run as root, or with passwordless
# sudo); elsewhere, install postgresql, redis-server, chromium and promtool yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

have_postgres() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools) # creates the test Redis Cluster
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# promtool checks the Prometheus exposition (longtask-tower/tests/prometheus.rs). Debian ships it in
# the `prometheus` package (with the server, which its install may enable as a service where
# systemd runs).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
        log "installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        log "missing ${missing[*]}: the tests that need them will fail saying how to get them"
    fi
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, all features, warnings denied)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

log "cargo doc (broken or private intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

# One test process per test binary (cargo test, not nextest), so that each binary starts one
# throwaway server and its tests share it, each in its own schema / key prefix, in parallel.
log "cargo test (every crate, every feature, doctests included)"
cargo test --workspace --all-features
