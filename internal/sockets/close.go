package sockets

import (
	"strings"
	"unicode/utf8"
)

// Close codes, and what fits of a reason in a close frame.
const (
	closeGoingAway = 1001
	// CloseServiceRestart (1012) tells a client to reconnect: the object
	// it talks to moved to another node (cluster mode), which any node
	// routes it to.
	CloseServiceRestart = 1012
	closeAbnormal       = 1006
	closeMessageTooBig  = 1009
	closeTryAgainLater  = 1013
	maxCloseReasonBytes = 123
	slowReason          = "slow client"
	// droppedReason is the reason WebSocketClose gets with 1006, for a
	// connection that ended without a close frame: Cloudflare's words.
	droppedReason = "WebSocket disconnected without sending Close frame."
)

// validCloseCode reports whether an endpoint may send code in a close
// frame: those RFC 6455 defines for it (1000-1003, 1007-1014) and the
// range for applications and libraries (3000-4999). The rest are refused
// rather than sent, because clients fail a connection whose close frame
// carries one: 1004, 1005, 1006 and 1015 are reserved and never sent (as
// Cloudflare refuses them too), and 1016-2999 are unassigned.
func validCloseCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < 1000 || code > 1014:
		return false
	}
	return code != 1004 && code != 1005 && code != 1006
}

// closeReason returns reason as a close frame may carry it: valid UTF-8
// (an invalid sequence becomes U+FFFD, as a JavaScript string's lone
// surrogate does) cut to the 123 bytes a frame holds, at a character
// boundary, so that the client does not fail the frame.
func closeReason(reason string) string {
	reason = strings.ToValidUTF8(reason, string(utf8.RuneError))
	if len(reason) <= maxCloseReasonBytes {
		return reason
	}
	n := maxCloseReasonBytes
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}
