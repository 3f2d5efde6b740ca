package server

import (
	"net/http"
	"net/http/pprof"
)

// ProfilingHandler returns Go's runtime profiles (net/http/pprof) under
// /debug/pprof/: CPU (/debug/pprof/profile?seconds=N), heap and
// allocations, goroutines, mutex and block contention, and execution
// traces. It is what an operator measures a loaded server with.
//
// It is never part of Handler: profiles expose the program's internals
// and a CPU profile costs the server while it runs, so a program serves
// it only when asked, on an address of its own that stays private (the
// example server's -pprof-addr), or behind its own authentication.
func ProfilingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // the named profiles: heap, allocs, goroutine, …
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}
