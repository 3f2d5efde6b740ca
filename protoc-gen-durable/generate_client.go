package main

// The remote side of a class: the namespace that mints or asks for IDs and
// the stub that calls objects over Connect, gRPC or gRPC-Web, in the remote
// file; and their aliases in the local file.

// remoteNamespace writes the remote namespace and its constructor.
func (cg *classGenerator) remoteNamespace() {
	g, n := cg.g, cg.n
	comment(g, n.Client, " is a remote namespace of the ", n.Class,
		" class: its stubs call objects over Connect (or gRPC, or gRPC-Web, as the options choose),",
		" with the object's ID or name in request metadata.")
	g.P("type ", n.Client, " struct {")
	g.P("ns *", clientPackage.Ident("Namespace"))
	g.P("rpc ", n.rpcs)
	g.P("}")
	g.P()
	comment(g, n.rpcs, " holds the Connect client of each method of ", n.Class, ".")
	g.P("type ", n.rpcs, " struct {")
	for _, m := range cg.c.service.Methods {
		g.P(m.GoName, " *", connectPackage.Ident("Client"), "[", m.Input.GoIdent, ", ", m.Output.GoIdent, "]")
	}
	g.P("}")
	g.P()
	comment(g, n.NewClient, " returns a remote namespace of the ", n.Class,
		` class served at baseURL, for example "http://127.0.0.1:8080".`)
	g.P("func ", n.NewClient, "(httpClient ", connectPackage.Ident("HTTPClient"), ", baseURL string, opts ...",
		clientPackage.Ident("Option"), ") *", n.Client, " {")
	g.P("ns := ", clientPackage.Ident("NewNamespace"), "(", n.ClassName, ", httpClient, baseURL, opts...)")
	g.P("return &", n.Client, "{ns: ns, rpc: ", n.rpcs, "{")
	for _, m := range cg.c.service.Methods {
		g.P(m.GoName, ": ", clientPackage.Ident("NewMethod"), "[", m.Input.GoIdent, ", ", m.Output.GoIdent, "](ns, ", cg.schema(m), "),")
	}
	g.P("}}")
	g.P("}")
	g.P()
	comment(g, "IDFromName returns an ID that addresses the object by name; the server",
		" derives its bytes (see client.WithSecret to derive them locally).")
	g.P("func (c *", n.Client, ") IDFromName(name string) ", cg.id, " { return c.ns.IDFromName(name) }")
	g.P()
	comment(g, "IDFromString parses the canonical form of a ", n.Class,
		" ID. Its MAC is checked by the server, or locally when the client holds the secret.")
	g.P("func (c *", n.Client, ") IDFromString(s string) (", cg.id, ", error) { return c.ns.IDFromString(s) }")
	g.P()
	comment(g, "NewUniqueID asks the server for a fresh random ID, unless the client holds the secret and mints it locally.")
	g.P("func (c *", n.Client, ") NewUniqueID(ctx ", cg.ctx, ") (", cg.id, ", error) {")
	g.P("return c.ns.NewUniqueID(ctx)")
	g.P("}")
	g.P()
	comment(g, "ResolveName returns the resolved ID that name maps to, asking the server unless the client holds the secret.")
	g.P("func (c *", n.Client, ") ResolveName(ctx ", cg.ctx, ", name string) (", cg.id, ", error) {")
	g.P("return c.ns.ResolveName(ctx, name)")
	g.P("}")
	g.P()
	comment(g, "Get returns a remote stub for the object with the given ID.")
	g.P("func (c *", n.Client, ") Get(id ", cg.id, ") ", n.Stub, " {")
	g.P("return &", n.remoteStub, "{c: c, id: id}")
	g.P("}")
	g.P()
}

// remoteStub writes the remote stub: each method is a Connect call with the
// object's address in the request headers.
func (cg *classGenerator) remoteStub() {
	g, n := cg.g, cg.n
	g.P("type ", n.remoteStub, " struct {")
	g.P("c *", n.Client)
	g.P("id ", cg.id)
	g.P("}")
	g.P()
	g.P("func (s *", n.remoteStub, ") ID() ", cg.id, " { return s.id }")
	g.P()
	for _, m := range cg.c.service.Methods {
		cg.stubMethod(n.remoteStub, m, clientPackage.Ident("Invoke"), "(ctx, s.c.ns, s.id, ", n.method(m), ", req, s.c.rpc.", m.GoName, ".CallUnary)")
	}
	g.P("func (s *", n.remoteStub, ") Fetch(ctx ", cg.ctx, ", req *", cg.request, ") (*", cg.response, ", error) {")
	g.P("return ", clientPackage.Ident("Fetch"), "(ctx, s.c.ns, s.id, ", n.URLSegment, ", req)")
	g.P("}")
	g.P()
}

// remoteAliases declares the remote namespace and its constructor in the
// local file, as the remote file's, so that a server that also calls
// objects remotely needs one import, and code written before the remote
// side had a package of its own still compiles.
func (cg *classGenerator) remoteAliases() {
	g, n := cg.g, cg.n
	comment(g, n.Client, " is a remote namespace of the ", n.Class, " class: its stubs call objects over",
		" Connect (or gRPC, or gRPC-Web, as the options choose). A program that only calls objects can",
		" import it from package ", cg.file.GoPackageName+clientPackageSuffix, " instead, to link none of the server.")
	g.P("type ", n.Client, " = ", cg.remote.Ident(n.Client))
	g.P()
	comment(g, n.NewClient, " returns a remote namespace of the ", n.Class,
		` class served at baseURL, for example "http://127.0.0.1:8080", as `,
		cg.remote.Ident(n.NewClient), " does.")
	g.P("func ", n.NewClient, "(httpClient ", connectPackage.Ident("HTTPClient"), ", baseURL string, opts ...",
		clientPackage.Ident("Option"), ") *", n.Client, " {")
	g.P("return ", cg.remote.Ident(n.NewClient), "(httpClient, baseURL, opts...)")
	g.P("}")
	g.P()
}
