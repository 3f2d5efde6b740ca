#!/usr/bin/env bash
# Interoperability tests of the TypeScript clients: type-checks the
# generated TypeScript (web/src/gen) with the runtime package (web/durable)
# and the tests, then starts the example server on 127.0.0.1 with a fresh
# data directory and runs web/test/node-interop.test.ts against it:
# @connectrpc/connect-node over Connect (HTTP/1.1 and HTTP/2), gRPC (h2c)
# and gRPC-Web. Fails when a check or a test fails. Needs Node and npm;
# installs web/node_modules with npm ci when missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
	rm -rf "$work"
}
trap cleanup EXIT

if [ ! -f web/node_modules/.package-lock.json ] ||
	[ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
	(cd web && npm ci --no-audit --no-fund)
fi

echo "interop: tsc over web/src/gen, web/durable and the tests"
(cd web && ./node_modules/.bin/tsc -p tsconfig.durable.json)

go build -o "$work/server" ./examples/server
"$work/server" -addr 127.0.0.1:0 -data "$work/data" 2>"$work/log" &
pid=$!
addr=
for _ in $(seq 100); do
	addr=$(sed -n 's/.*listening" addr=http:\/\/\([0-9.:]*\).*/\1/p' "$work/log")
	[ -n "$addr" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$addr" ] || { cat "$work/log"; echo "interop: server did not start"; exit 1; }
for _ in $(seq 50); do
	curl -fsS -o /dev/null "http://$addr/grpc.health.v1.Health/Check" \
		-H 'Content-Type: application/json' -d '{}' && break
	sleep 0.1
done

echo "interop: Node tests against http://$addr"
status=0
(cd web && DURABLE_URL="http://$addr" timeout 300 \
	node --import tsx --test --test-timeout=60000 test/node-interop.test.ts) || status=$?
if [ "$status" -ne 0 ]; then
	echo "interop: Node tests failed (exit $status); server log:"
	tail -50 "$work/log"
	exit "$status"
fi

kill -TERM "$pid"
wait "$pid"
grep -q "stopped cleanly" "$work/log" || { cat "$work/log"; echo "interop: no clean stop"; exit 1; }
pid=
echo "interop: ok"
