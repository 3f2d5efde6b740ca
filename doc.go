// Package durable holds what every user of Durable touches: object IDs
// ([ID], [IDSpace]), the live object handle ([Object]), the optional hooks an
// implementation may satisfy ([Initializer]), and the errors callers tell
// apart ([RPCError], [ErrClassNotFound], [ErrOverloaded], ...).
//
// Durable runs stateful, single-threaded objects addressed by ID, declared
// in protobuf: a service carrying the option (durable.v1.object) becomes an
// object class, protoc-gen-durable emits its Go glue, and package server
// hosts the objects, one live instance per ID, one call at a time, with the
// state persisted in embedded SQLite after every successful call.
package durable
