#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs formatting,
# lints and every test of the workspace with every feature, the command blocks
# of README.md as they are written, and every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
phase() { echo "== [$((SECONDS - started)) s] $*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: OpenBLAS for the `openblas` feature, Redis for the storage
# tests, openssl for the certificates of the TLS Redis server.
missing=()
for package in libopenblas-dev pkg-config redis-server openssl; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Toolchain components (present on most installs; added when missing).
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# Real servers on free 127.0.0.1 ports, stopped when this script exits.
workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # name, seconds, command...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "error: $name did not start within ${seconds}s; its log:" >&2
  cat "$workdir/$name.log" >&2 || true
  exit 1
}

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$workdir" \
  >"$workdir/redis.log" 2>&1 &
pids+=($!)
wait_for redis 10 sh -c "[ \"\$(redis-cli -h 127.0.0.1 -p $redis_port ping)\" = PONG ]"
export WUKONG_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
echo "== redis-server on 127.0.0.1:$redis_port"

# A second Redis that speaks only TLS, with a certificate for localhost and
# 127.0.0.1 signed by a throwaway CA.
tls="$workdir/tls"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=wukong-test-ca \
  -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
  -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
  >"$tls/server.ext"
openssl x509 -req -days 2 -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
  -CAcreateserial -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
rediss_port=$(free_port)
redis-server --bind 127.0.0.1 --port 0 --tls-port "$rediss_port" --save "" --appendonly no \
  --dir "$workdir" --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" \
  --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no >"$workdir/rediss.log" 2>&1 &
pids+=($!)
wait_for rediss 10 sh -c "[ \"\$(redis-cli --tls --cacert $tls/ca.crt -h localhost -p $rediss_port ping)\" = PONG ]"
export WUKONG_TEST_REDISS_URL="rediss://localhost:$rediss_port" WUKONG_TEST_REDIS_CA="$tls/ca.crt"
echo "== redis-server (TLS) on 127.0.0.1:$rediss_port"

pip_install() { # packages...
  python3 -m pip install --quiet "$@" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$@"
}

# moto (PyPI) as the S3 endpoint; the tests use its fixed test credentials.
if ! python3 -c "import moto.server, flask" >/dev/null 2>&1; then
  echo "== installing moto[server]"
  pip_install "moto[server]"
fi
http() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[2], method=sys.argv[1]), timeout=5)' "$@"; }
start_moto() { # name, port, extra environment...
  local name=$1 port=$2; shift 2
  env "$@" python3 -m moto.server -H 127.0.0.1 -p "$port" >"$workdir/$name.log" 2>&1 &
  pids+=($!)
}
s3_port=$(free_port)
start_moto moto "$s3_port"
# A second one that checks every request's signature (no IAM users: every key is wrong).
s3_auth_port=$(free_port)
start_moto moto-auth "$s3_auth_port" INITIAL_NO_AUTH_ACTION_COUNT=0
wait_for moto 60 http GET "http://127.0.0.1:$s3_port/moto-api/"
wait_for moto-auth 60 http GET "http://127.0.0.1:$s3_auth_port/moto-api/"
http PUT "http://127.0.0.1:$s3_port/wukong-test" || { echo "error: cannot create the test bucket" >&2; exit 1; }
export WUKONG_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export WUKONG_TEST_S3_AUTH_ENDPOINT="http://127.0.0.1:$s3_auth_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
# Every AWS client gets its credentials from the line above: never ask the
# instance metadata service (an address outside 127.0.0.0/8).
export AWS_EC2_METADATA_DISABLED=true
echo "== moto_server (S3) on 127.0.0.1:$s3_port"

# cargo-lambda (PyPI, prebuilt) as the Lambda API: `watch --only-lambda-apis`
# serves the Invoke API and the runtime API; the tests start the function
# processes (`wukong-lambda`) themselves, several at once.
if ! command -v cargo-lambda >/dev/null 2>&1; then
  echo "== installing cargo-lambda"
  python3 -m pip install --quiet cargo-lambda 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages cargo-lambda
fi
lambda_port=$(free_port)
cargo lambda watch --only-lambda-apis --ignore-changes -A 127.0.0.1 -P "$lambda_port" \
  >"$workdir/cargo-lambda.log" 2>&1 &
pids+=($!)
wait_for cargo-lambda 60 python3 -c "import socket; socket.create_connection(('127.0.0.1', $lambda_port), 1)"
export WUKONG_TEST_LAMBDA_ENDPOINT="http://127.0.0.1:$lambda_port"
echo "== cargo lambda watch (Lambda API) on 127.0.0.1:$lambda_port"

# `bash scripts/test.sh <cargo test arguments>` runs just those tests against
# the servers above, e.g. `bash scripts/test.sh -p wukong-storage --all-features`.
if [ $# -gt 0 ]; then
  echo "== cargo test $*"
  cargo test "$@"
  exit
fi

# numpy for the README's commands; nbclient and nbconvert to execute the
# notebooks; evcxr_jupyter (crates.io) as their kernel.
if ! python3 -c "import numpy, nbclient, nbconvert, nbformat" >/dev/null 2>&1; then
  echo "== installing numpy, nbclient, nbconvert"
  pip_install numpy nbclient nbconvert nbformat
fi
evcxr="${CARGO_HOME:-$HOME/.cargo}/bin/evcxr_jupyter"
if [ ! -x "$evcxr" ]; then
  # About six minutes on two cores (compiling it at low priority beside the
  # suite was measured no faster: the suite leaves few cycles idle).
  phase "installing evcxr_jupyter (cargo install)"
  cargo install --locked --quiet evcxr_jupyter --version 0.22.0
fi
"$evcxr" --install >/dev/null

phase "README.md: every command block is marked"
python3 scripts/readme.py check
phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
phase "cargo test"
cargo test --workspace --all-features
phase "README.md command blocks, as written"
python3 scripts/readme.py run
phase "notebooks"
python3 scripts/notebooks.py
phase "all passed"
