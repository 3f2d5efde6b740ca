# Shell functions shared by the scripts and .ci/run; source it after
# `cd` to the repository root, with `set -euo pipefail`.

# npm_ci_web installs web/node_modules with npm ci when it is missing or
# older than web/package-lock.json (npm writes node_modules/.package-lock.json).
npm_ci_web() {
	if [ ! -f web/node_modules/.package-lock.json ] ||
		[ web/package-lock.json -nt web/node_modules/.package-lock.json ] ||
		[ ! -x web/node_modules/.bin/protoc-gen-es ]; then
		(cd web && npm ci --no-audit --no-fund)
	fi
}

# start_example_server BIN DIR NAME starts the example server BIN on a free
# loopback port with the data directory DIR/data and its log in DIR/log,
# and waits (at most 10 s) until it answers health checks. It sets addr
# (host:port) and pid; NAME prefixes its messages.
start_example_server() {
	local bin=$1 dir=$2 name=$3
	"$bin" -addr 127.0.0.1:0 -data "$dir/data" 2>"$dir/log" &
	pid=$!
	addr=
	for _ in $(seq 100); do
		addr=$(sed -n 's/.*listening" addr=http:\/\/\([0-9.:]*\).*/\1/p' "$dir/log")
		[ -n "$addr" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$addr" ] || { cat "$dir/log"; echo "$name: server did not start"; return 1; }
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://$addr/grpc.health.v1.Health/Check" \
			-H 'Content-Type: application/json' -d '{}' && return 0
		sleep 0.1
	done
	echo "$name: server does not answer health checks"
	return 1
}

# stop_example_server DIR NAME stops the server started by
# start_example_server with SIGTERM and fails unless it stopped cleanly.
stop_example_server() {
	local dir=$1 name=$2
	kill -TERM "$pid"
	wait "$pid"
	grep -q "stopped cleanly" "$dir/log" || { cat "$dir/log"; echo "$name: no clean stop"; return 1; }
	pid=
}

# kill_example_server ends the server of start_example_server, if running.
kill_example_server() {
	if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
}
