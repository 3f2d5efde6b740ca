#!/usr/bin/env bash
# Proves the README's "Start your own project": in an empty temporary
# directory, durable init against this checkout, then buf generate, go vet,
# go test, and the new server started and called with curl (Connect JSON).
# Needs the Go module proxy only. Fails on any unexpected answer.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
work=$(mktemp -d)
pid=
trap 'kill_example_server; rm -rf "$work"' EXIT

# Every go command and curl is bounded: a stuck proxy or server fails the
# run instead of hanging CI.
bounded() { timeout 600 "$@"; }

bounded go run ./cmd/durable init -module example.com/hello -replace "$root" "$work/hello"
cd "$work/hello"
# What init prints as the next steps, and the README lists.
bounded go tool -modfile=tools/go.mod buf generate
bounded go tool -modfile=tools/go.mod buf lint
bounded go vet ./...
bounded go test -count=1 ./...
bounded go build -o "$work/bin/hello" .
echo "newproject: generate, lint, vet, test, build: ok"

# The module's code, not ours, answers: its own data directory, its own port.
start_example_server "$work/bin/hello" "$work" newproject
got=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H 'Durable-Object-Name: user-123' \
	-d '{"amount": 5}' "http://$addr/counter.v1.Counter/Increment")
[ "$got" = '{"value":"5"}' ] || { echo "newproject: curl Increment: got $got"; exit 1; }
got=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -H 'Durable-Object-Name: user-123' \
	-d '{}' "http://$addr/counter.v1.Counter/GetValue")
[ "$got" = '{"value":"5"}' ] || { echo "newproject: curl GetValue: got $got"; exit 1; }
echo "newproject: curl Increment and GetValue: ok"
stop_example_server "$work" newproject
echo "newproject: clean stop on SIGTERM: ok"

# init refuses to write over a project; proto finds the options file it
# wrote current.
cd "$root"
got=$(go run ./cmd/durable proto "$work/hello/proto-deps")
case "$got" in
*"up to date"*) echo "newproject: durable proto: up to date: ok" ;;
*) echo "newproject: durable proto: $got"; exit 1 ;;
esac
if out=$(go run ./cmd/durable init -tidy=false "$work/hello" 2>&1); then
	echo "newproject: init over an existing project succeeded"; exit 1
fi
case "$out" in
*"file exists"*"not overwritten"*) echo "newproject: init refuses to overwrite: ok" ;;
*) echo "newproject: init over an existing project: $out"; exit 1 ;;
esac
