package main

import "strconv"

// The in-process side of a class: its namespace, the Register function that
// mounts its Connect handlers, and the stub that calls through the mailbox.

// localNamespace writes the in-process namespace and Register.
func (cg *classGenerator) localNamespace() {
	g, n := cg.g, cg.n
	comment(g, n.Namespace, " is the in-process namespace of the ", n.Class,
		" class: it mints IDs and returns stubs that call objects through their mailboxes, without HTTP or serialization.")
	g.P("type ", n.Namespace, " struct {")
	g.P("ns *", cg.namespace)
	g.P("impl ", n.Interface)
	g.P("}")
	g.P()

	comment(g, n.Register, " registers impl as the ", n.Class,
		" class of srv and mounts its Connect, gRPC and gRPC-Web handlers.")
	g.P("func ", n.Register, "(srv *", serverPackage.Ident("Server"), ", impl ", n.Interface,
		") (*", n.Namespace, ", error) {")
	g.P("ns, err := ", serverPackage.Ident("Register"), "[", cg.state, "](srv, ", serverPackage.Ident("Class"), "{")
	g.P("Name: ", n.ClassName, ",")
	g.P("Binding: ", n.Binding, ",")
	g.P("Segment: ", n.URLSegment, ",")
	g.P("Service: ", strconv.Quote(string(cg.c.service.Desc.FullName())), ",")
	g.P("SQL: ", cg.c.sql, ",")
	g.P("}, impl)")
	g.P("if err != nil {")
	g.P("return nil, err")
	g.P("}")
	for _, m := range cg.c.service.Methods {
		g.P(serverPackage.Ident("HandleMethod"), "(ns, ", cg.schema(m), ", impl.", m.GoName, ")")
	}
	g.P("return &", n.Namespace, "{ns: ns, impl: impl}, nil")
	g.P("}")
	g.P()

	comment(g, "IDFromName returns the ID that name maps to, the same every time.")
	g.P("func (n *", n.Namespace, ") IDFromName(name string) ", cg.id, " { return n.ns.IDFromName(name) }")
	g.P()
	comment(g, "IDFromString parses the canonical form of a ", n.Class, " ID.")
	g.P("func (n *", n.Namespace, ") IDFromString(s string) (", cg.id, ", error) { return n.ns.IDFromString(s) }")
	g.P()
	comment(g, "NewUniqueID returns a fresh random ID.")
	g.P("func (n *", n.Namespace, ") NewUniqueID() ", cg.id, " { return n.ns.NewUniqueID() }")
	g.P()
	comment(g, "Get returns an in-process stub for the object with the given ID.")
	g.P("func (n *", n.Namespace, ") Get(id ", cg.id, ") ", n.Stub, " {")
	g.P("return &", n.localStub, "{ns: n.ns, impl: n.impl, id: id}")
	g.P("}")
	g.P()
}

// localStub writes the in-process stub: each method is a call through the
// object's mailbox to the implementation's method.
func (cg *classGenerator) localStub() {
	g, n := cg.g, cg.n
	g.P("type ", n.localStub, " struct {")
	g.P("ns *", cg.namespace)
	g.P("impl ", n.Interface)
	g.P("id ", cg.id)
	g.P("}")
	g.P()
	g.P("func (s *", n.localStub, ") ID() ", cg.id, " { return s.id }")
	g.P()
	for _, m := range cg.c.service.Methods {
		cg.stubMethod(n.localStub, m, serverPackage.Ident("Invoke"), "(ctx, s.ns, s.id, ", n.method(m), ", req, s.impl.", m.GoName, ")")
	}
	g.P("func (s *", n.localStub, ") Fetch(ctx ", cg.ctx, ", req *", cg.request, ") (*", cg.response, ", error) {")
	g.P("return ", serverPackage.Ident("Fetch"), "(ctx, s.ns, s.id, req)")
	g.P("}")
	g.P()
}
