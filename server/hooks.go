package server

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/durablego/durable"
)

// ErrHookSignature matches the error of Register for an implementation
// with a method named like an object hook (Init, Alarm, Fetch,
// WebSocketMessage, WebSocketClose, WebSocketError) that does not satisfy
// the hook's interface. Hooks are optional interfaces, so such a method
// would otherwise never be called, and nothing would say why.
var ErrHookSignature = errors.New("server: a method named like an object hook has the wrong signature")

// hookInterfaces returns, for each object hook, its method name and the
// interface an implementation satisfies to have it called.
func hookInterfaces[S proto.Message]() []reflect.Type {
	return []reflect.Type{
		reflect.TypeFor[durable.Initializer[S]](),
		reflect.TypeFor[durable.Alarmer[S]](),
		reflect.TypeFor[durable.Fetcher[S]](),
		reflect.TypeFor[durable.WebSocketMessager[S]](),
		reflect.TypeFor[durable.WebSocketCloser[S]](),
		reflect.TypeFor[durable.WebSocketErrorer[S]](),
	}
}

// checkHooks fails for each method of impl named like a hook that is not
// the hook: a wrong signature, or a pointer method of an implementation
// registered by value (which the value's method set does not hold).
func checkHooks[S proto.Message](class string, impl any) error {
	t := reflect.TypeOf(impl)
	if t == nil {
		return nil
	}
	// Type arguments print with their full import path; the state type is
	// the only one here, so it is shortened to the form Go code uses.
	state := reflect.TypeFor[S]()
	for state.Kind() == reflect.Pointer {
		state = state.Elem()
	}
	short := strings.NewReplacer(state.PkgPath()+"."+state.Name(), state.String()).Replace
	var errs []error
	for _, iface := range hookInterfaces[S]() {
		want := iface.Method(0)
		if t.Implements(iface) {
			continue
		}
		if m, ok := t.MethodByName(want.Name); ok {
			errs = append(errs, fmt.Errorf("%w: class %s: %s.%s is %s, but the %s hook (%s) must be %s",
				ErrHookSignature, class, t, want.Name, short(signature(m.Type, true)), want.Name, short(iface.String()), short(signature(want.Type, false))))
			continue
		}
		if t.Kind() != reflect.Pointer {
			if _, ok := reflect.PointerTo(t).MethodByName(want.Name); ok {
				errs = append(errs, fmt.Errorf("%w: class %s: %s has a pointer receiver, so the %s it was registered with does not have it: register a *%s",
					ErrHookSignature, class, want.Name, t, t))
			}
		}
	}
	return errors.Join(errs...)
}

// signature formats a method's type as "func(…) …", without the receiver
// when the type has one (a method of a concrete type).
func signature(fn reflect.Type, hasReceiver bool) string {
	var in, out []string
	for i := range fn.NumIn() {
		if i == 0 && hasReceiver {
			continue
		}
		in = append(in, fn.In(i).String())
	}
	for i := range fn.NumOut() {
		out = append(out, fn.Out(i).String())
	}
	s := "func(" + strings.Join(in, ", ") + ")"
	switch len(out) {
	case 0:
	case 1:
		s += " " + out[0]
	default:
		s += " (" + strings.Join(out, ", ") + ")"
	}
	return s
}
