#!/usr/bin/env bash
# Regenerates gen/ (Go), web/src/gen/ (TypeScript) and web/durable/src/gen/
# (the runtime package's durable/v1/durable_pb.ts) from proto/ with pinned
# tools: buf, protoc-gen-go and protoc-gen-connect-go built from the Go module
# proxy, our own protoc-gen-durable from this checkout, and protoc-gen-es
# from web/node_modules (pinned in web/package-lock.json, installed with npm
# ci when missing or stale). No schema registry is contacted. Then lints
# proto/.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION=v1.21.1
# The github.com/bufbuild/protovalidate release whose
# buf/validate/validate.proto our protos import. It must describe the same
# rules as the buf/validate Go package that go.mod's buf.build/go/protovalidate
# brings; scripts/checkvalidate.go fails the run when they differ.
PROTOVALIDATE_VERSION=v1.2.0

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT

GOBIN="$bin" go install "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}"
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@${PROTOC_GEN_CONNECT_GO_VERSION}"
go build -o "$bin/protoc-gen-durable" ./protoc-gen-durable

# buf/validate/validate.proto, from the Go module cache into the gitignored
# proto-deps/, the second module of buf.yaml: imported, never generated.
pvjson=$(go mod download -json "github.com/bufbuild/protovalidate@${PROTOVALIDATE_VERSION}") ||
	{ echo "$pvjson" >&2; exit 1; }
pv=$(printf '%s\n' "$pvjson" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$pv" ] || [ ! -f "$pv/proto/protovalidate/buf/validate/validate.proto" ]; then
	echo "generate.sh: no buf/validate/validate.proto in github.com/bufbuild/protovalidate@${PROTOVALIDATE_VERSION}" >&2
	exit 1
fi
rm -rf proto-deps/protovalidate
mkdir -p proto-deps/protovalidate/buf/validate
cp "$pv/proto/protovalidate/buf/validate/validate.proto" proto-deps/protovalidate/buf/validate/
chmod 644 proto-deps/protovalidate/buf/validate/validate.proto

# protoc-gen-es, for web/src/gen/, from web/node_modules.
. scripts/lib.sh
npm_ci_web
export PATH="$bin:$root/web/node_modules/.bin:$PATH"

buf build --exclude-source-info -o "$bin/image.binpb"
go run scripts/checkvalidate.go "$bin/image.binpb"
buf generate
# The runtime package's own durable/v1/durable_pb.ts (web/durable/src/gen).
buf generate --template web/durable/buf.gen.yaml --path proto/durable/v1/durable.proto
buf lint
