#!/usr/bin/env bash
# Runs the README's tutorial commands against a real example server: curl
# with the Connect protocol, grpcurl through reflection, and a clean stop on
# SIGTERM. Fails on any unexpected answer.
set -euo pipefail

GRPCURL_VERSION=v1.9.4

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/lib.sh
work=$(mktemp -d)
pid=
trap 'kill_example_server; rm -rf "$work"' EXIT

GOBIN="$work/bin" go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@${GRPCURL_VERSION}"
go build -o "$work/bin/server" ./examples/server

start_example_server "$work/bin/server" "$work" smoke

expect() { # expect NAME WANT GOT
	if [ "$2" != "$3" ]; then
		echo "smoke: $1: got $3, want $2"
		exit 1
	fi
	echo "smoke: $1: ok"
}

got=$(curl -sS -H 'Content-Type: application/json' -H 'Durable-Object-Name: user-123' \
	-d '{"amount": 5}' "http://$addr/examples.counter.v1.Counter/Increment")
expect "curl Increment" '{"value":"5"}' "$got"

got=$("$work/bin/grpcurl" -plaintext -H 'Durable-Object-Name: user-123' -d '{"amount": 2}' \
	"$addr" examples.counter.v1.Counter/Increment | tr -d ' \n')
expect "grpcurl Increment" '{"value":"7"}' "$got"

got=$("$work/bin/grpcurl" -plaintext "$addr" list | tr '\n' ' ')
expect "grpcurl list" 'durable.v1.IDService examples.analytics.v1.Analytics examples.cart.v1.Cart examples.chat.v1.ChatRoom examples.counter.v1.Counter examples.document.v1.Document examples.preferences.v1.Preferences examples.ratelimiter.v1.RateLimiter examples.session.v1.Session examples.usersession.v1.UserSession examples.wallet.v1.Wallet ' "$got"

# Reflection serves the protovalidate rules with the messages that carry
# them (and buf/validate/validate.proto, which grpcurl needs to print them).
got=$("$work/bin/grpcurl" -plaintext "$addr" describe examples.wallet.v1.DepositRequest | tr -d '\n')
case "$got" in
*'int64 amount = 2 [(.buf.validate.field) = { int64: { gt: 0 } }]'*) echo "smoke: grpcurl describe with rules: ok" ;;
*) echo "smoke: grpcurl describe with rules: got $got"; exit 1 ;;
esac

got=$(curl -sS -H 'Content-Type: application/json' -H 'Durable-Object-Name: family' \
	-d '{"account": "alice", "amount": 0}' "http://$addr/examples.wallet.v1.Wallet/Deposit")
case "$got" in
*invalid_argument*amount*) echo "smoke: invalid request refused: ok" ;;
*) echo "smoke: invalid request refused: got $got"; exit 1 ;;
esac

got=$(curl -sS -H 'Content-Type: application/json' -d '{}' "http://$addr/examples.counter.v1.Counter/GetValue")
case "$got" in
*invalid_argument*Durable-Object-Name*) echo "smoke: missing ID header: ok" ;;
*) echo "smoke: missing ID header: got $got"; exit 1 ;;
esac

# HTTP on objects: the counter's Fetch, as on the reference page.
got=$(curl -sS "http://$addr/objects/counter/user-123/")
case "$got" in
'{"value":7,"timestamp":'*'}') echo "smoke: curl GET on the counter's Fetch: ok" ;;
*) echo "smoke: curl GET on the counter's Fetch: got $got"; exit 1 ;;
esac

got=$(curl -sS -d '{"amount": 3}' "http://$addr/objects/counter/user-123/increment")
expect "curl POST on the counter's Fetch" '{"value":10}' "$got"

# Metrics: the calls above, counted by class, method and code.
got=$(curl -sS "http://$addr/metrics" | grep -c '^durable_calls_total{class="Counter",code="ok",method="Increment"} 2$' || true)
expect "metrics count the Increment calls" 1 "$got"

# The web page at /.
got=$(curl -sS -o /dev/null -w '%{http_code} %{content_type}' "http://$addr/")
expect "web page at /" '200 text/html; charset=utf-8' "$got"

stop_example_server "$work" smoke
echo "smoke: clean stop on SIGTERM: ok"
