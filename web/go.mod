// This file fences web/ off from the Go module at the repository root:
// web/ is an npm project, and packages under web/node_modules may ship .go
// files that `go build ./...` and `go vet ./...` would otherwise try to
// build. Nothing here is a Go package.
module github.com/durablego/durable/web

go 1.26
