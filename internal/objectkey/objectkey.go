// Package objectkey holds the one name of an object that every layer
// shares: its class and the 32 bytes of its ID. The call chain, the
// mailboxes, the WebSocket hub, the alarm scheduler and storage's alarm
// index all key objects by it. It imports nothing of Durable's, so that
// any package may use it without a cycle; websocket.Key and alarms.Key are
// aliases of it, for their public APIs.
package objectkey

import "encoding/hex"

// Key names one object: its class and ID bytes. It is comparable, for use
// as a map key.
type Key struct {
	Class string
	ID    [32]byte
}

// String renders k as "Class:hexid", the form of a link of the
// Durable-Call-Chain header.
func (k Key) String() string { return k.Class + ":" + hex.EncodeToString(k.ID[:]) }
