// Package usersession implements the reference page's state-validation
// example: a session whose state message carries protovalidate rules (the
// reference's Zod schema), which the server checks after every call that
// changes it.
package usersession

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	usersessionv1 "github.com/durablego/durable/gen/examples/usersession/v1"
	"github.com/durablego/durable/gen/examples/usersession/v1/usersessionv1durable"
)

// DefaultTTL is how long a session lasts when SetUser sets no TTL.
const DefaultTTL = time.Hour

// ErrExpired fails GetData on an expired session, with the code
// FailedPrecondition.
var ErrExpired = errors.New("session expired")

// UserSession implements usersessionv1durable.UserSession. Its Now field is
// the clock, time.Now when nil, so tests can move time past expiry.
type UserSession struct {
	Now func() time.Time
}

var _ usersessionv1durable.UserSession = UserSession{}

func (u UserSession) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// SetUser signs the user in until now + TTL. The state's rules, not this
// method, bound the user ID's length.
func (u UserSession) SetUser(_ context.Context, o *usersessionv1durable.UserSessionObject, req *usersessionv1.SetUserRequest) (*usersessionv1.SetUserResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = DefaultTTL
	}
	o.State.UserId = req.GetUserId()
	o.State.ExpiresAtMs = u.now().Add(ttl).UnixMilli()
	return &usersessionv1.SetUserResponse{ExpiresAtMs: o.State.ExpiresAtMs}, nil
}

// GetData returns the session unless it has expired; a session that never
// had a user expired at 0.
func (u UserSession) GetData(_ context.Context, o *usersessionv1durable.UserSessionObject, _ *usersessionv1.GetDataRequest) (*usersessionv1.GetDataResponse, error) {
	if u.now().UnixMilli() > o.State.GetExpiresAtMs() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, ErrExpired)
	}
	// The server clones a response before the object runs its next call.
	return &usersessionv1.GetDataResponse{Session: o.State}, nil
}
