# Sourced by the benchmark scripts: starts the release kandle-runtime on loopback in the
# background and returns once /readyz answers 200 (or exits, printing the server's log, if it
# stops first). Sets $server to its pid and stops it on exit.
# Usage: start_server PORT LOG [kandle-runtime flags...]
start_server() {
  local port="$1" log="$2"
  shift 2
  target/release/kandle-runtime --host 127.0.0.1 --port "$port" --log-format json "$@" \
    > "$log" 2>&1 &
  server=$!
  trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  echo "kandle-runtime was not ready within 60 s" >&2
  exit 1
}
