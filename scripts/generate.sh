#!/usr/bin/env bash
# Regenerates gen/ from proto/ with pinned tools, all built from the Go module
# proxy: buf, protoc-gen-go, protoc-gen-connect-go, and our own
# protoc-gen-durable from this checkout. No schema registry is contacted.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION=v1.21.1

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT

GOBIN="$bin" go install "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}"
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
GOBIN="$bin" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@${PROTOC_GEN_CONNECT_GO_VERSION}"
go build -o "$bin/protoc-gen-durable" ./protoc-gen-durable

PATH="$bin:$PATH" buf generate
