#!/usr/bin/env bash
# Runs the web page's end-to-end tests (web/test/browser.test.ts) in
# headless Chromium against a real example server. Needs Debian's chromium
# (/usr/bin/chromium, or set CHROMIUM) and web/node_modules (npm ci --prefix web).
#
# The script builds the server, picks a free loopback port and a fresh data
# directory, and hands them to the tests, which start the server and
# restart it on the same port and data (the counter must survive a
# restart). Screenshots and the server's log go to web/test-results/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
pidfile="$work/server.pid"
cleanup() {
	# The tests stop the server; if they died, end it here (its PID only).
	if [ -s "$pidfile" ]; then
		pid=$(cat "$pidfile")
		if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
	fi
	rm -rf "$work"
}
trap cleanup EXIT

[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || {
	echo "browser-test: no Chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install -y chromium" >&2
	exit 1
}
[ -d web/node_modules/playwright-core ] || {
	echo "browser-test: web/node_modules is missing: npm ci --prefix web" >&2
	exit 1
}

start=$(date +%s)
go build -o "$work/server" ./examples/server
# A free port, chosen once: the restarted server must serve the same origin.
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
mkdir -p web/test-results
: >web/test-results/server.log

export DURABLE_SERVER_BIN="$work/server"
export DURABLE_DATA_DIR="$work/data"
export DURABLE_ADDR="127.0.0.1:$port"
export DURABLE_SERVER_LOG="$root/web/test-results/server.log"
export DURABLE_SERVER_PIDFILE="$pidfile"
echo "browser-test: server at http://$DURABLE_ADDR, log in web/test-results/server.log"

status=0
(cd web && timeout 300 npm run --silent test:browser) || status=$?
echo "browser-test: $(($(date +%s) - start))s, screenshots in web/test-results/"
if [ "$status" -ne 0 ]; then
	echo "browser-test: FAILED (exit $status); the server's log:" >&2
	tail -n 40 web/test-results/server.log >&2 || true
fi
exit "$status"
