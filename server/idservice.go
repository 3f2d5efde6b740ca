package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/durablego/durable"
	durablev1 "github.com/durablego/durable/gen/durable/v1"
)

// idService mints and resolves IDs for remote callers, which do not hold
// the server's secret.
type idService struct{ srv *Server }

func (s *idService) NewUniqueID(_ context.Context, req *connect.Request[durablev1.NewUniqueIDRequest]) (*connect.Response[durablev1.NewUniqueIDResponse], error) {
	ns, err := s.class(req.Msg.GetClass())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.NewUniqueIDResponse{Id: ns.ids().NewUnique().String()}), nil
}

func (s *idService) IDFromName(_ context.Context, req *connect.Request[durablev1.IDFromNameRequest]) (*connect.Response[durablev1.IDFromNameResponse], error) {
	ns, err := s.class(req.Msg.GetClass())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&durablev1.IDFromNameResponse{Id: ns.ids().FromName(req.Msg.GetName()).String()}), nil
}

func (s *idService) class(name string) (registeredClass, error) {
	ns, err := s.srv.lookup(name)
	if errors.Is(err, durable.ErrClassNotFound) {
		// Unimplemented, as for a call to the class's service: one code per
		// kind (see durable.Kind).
		return nil, kindError(err)
	}
	return ns, err
}
