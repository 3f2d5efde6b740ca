#!/bin/sh
# build-etcd.sh builds the etcd server binary from the version of
# go.etcd.io/etcd/server/v3 the cluster module pins (go.mod), so that tests
# and production run the etcd the store was tested against.
#
#   cluster/scripts/build-etcd.sh [output]     (default: ./bin/etcd)
#
# The first build takes about a minute; the Go build cache keeps it.
set -eu
cd "$(dirname "$0")/.."
out=${1:-bin/etcd}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
mkdir -p "$(dirname "$out")"
version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
go build -trimpath -o "$out" go.etcd.io/etcd/server/v3
echo "built $out (etcd $version): $("$out" --version | head -1)"
