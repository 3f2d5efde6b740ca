// Builds the example server's page into examples/webui/dist, which the Go
// package examples/webui embeds (go:embed cannot reach outside its package
// directory, so the build goes there). The output is committed and CI
// checks that rebuilding it changes nothing: file names carry content
// hashes and nothing else varies between builds.
//
// `npm run dev` serves the page with hot reload and sends RPCs and the
// objects' WebSockets to an example server on 127.0.0.1:8080 (override
// with DURABLE_URL).
import { defineConfig } from "vite";

const target = process.env.DURABLE_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  root: ".",
  base: "/",
  publicDir: false,
  build: {
    outDir: "../examples/webui/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    modulePreload: { polyfill: false },
    target: "es2022",
  },
  server: {
    host: "127.0.0.1",
    proxy: {
      // Connect and gRPC-Web procedures (/package.Service/Method) and the
      // objects' HTTP and WebSocket routes.
      "^/[a-z0-9_]+(\\.[A-Za-z0-9_]+)+/": { target },
      "/objects/": { target, ws: true },
      "/objects-by-id/": { target, ws: true },
    },
  },
});
