#!/usr/bin/env bash
# Interoperability tests of the TypeScript clients: builds the runtime
# package (web/durable, to web/durable/dist) and type-checks the generated
# TypeScript (web/src/gen) and the tests against it, then runs the tests
# on the built JavaScript: starts the example server on 127.0.0.1 with a fresh
# data directory and runs web/test/node-interop.test.ts against it:
# @connectrpc/connect-node over Connect (HTTP/1.1 and HTTP/2), gRPC (h2c)
# and gRPC-Web. Fails when a check or a test fails. Needs Node and npm;
# installs web/node_modules with npm ci when missing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
work=$(mktemp -d)
pid=
trap 'kill_example_server; rm -rf "$work"' EXIT

npm_ci_web

echo "interop: web/durable built, tsc over web/src/gen and the tests"
npm run --prefix web --silent typecheck:durable

go build -o "$work/server" ./examples/server
start_example_server "$work/server" "$work" interop

echo "interop: Node tests against http://$addr"
status=0
(cd web && DURABLE_URL="http://$addr" timeout 300 npm run --silent test:node) || status=$?
if [ "$status" -ne 0 ]; then
	echo "interop: Node tests failed (exit $status); server log:"
	tail -50 "$work/log"
	exit "$status"
fi

stop_example_server "$work" interop
echo "interop: ok"
