// Runs the example server (a binary built by scripts/browser-test.sh) for
// the browser tests, which must be able to restart it on the same data
// directory and address.

import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, writeFileSync, rmSync } from "node:fs";

export type ServerOptions = {
  /** The example server binary (go build -o … ./examples/server). */
  bin: string;
  /** Its -data directory, kept across restarts. */
  dataDir: string;
  /** host:port to listen on, the same after a restart. */
  addr: string;
  /** Where its log goes (appended). */
  logFile: string;
  /** A file to hold the running server's PID, so the script can end it if the tests die. */
  pidFile?: string;
};

/** How long the server may take to start serving, or to stop. */
const startTimeoutMs = 30_000;
const stopTimeoutMs = 30_000;

export class ExampleServer {
  readonly url: string;
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;

  constructor(private readonly opts: ServerOptions) {
    this.url = `http://${opts.addr}`;
  }

  /**
   * Starts the server, with the flags args and the environment variables env
   * added to this process's, and waits until it serves the page.
   */
  async start(args: string[] = [], env: Record<string, string> = {}): Promise<void> {
    if (this.child) throw new Error("the server is already running");
    const log = openSync(this.opts.logFile, "a");
    const child = spawn(this.opts.bin, ["-addr", this.opts.addr, "-data", this.opts.dataDir, ...args], {
      stdio: ["ignore", log, log],
      env: { ...process.env, ...env },
    });
    closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    if (this.opts.pidFile && child.pid !== undefined) writeFileSync(this.opts.pidFile, `${child.pid}\n`);

    const deadline = Date.now() + startTimeoutMs;
    let exitCode: number | null | undefined;
    void this.exited.then((code) => (exitCode = code));
    for (;;) {
      if (exitCode !== undefined) {
        this.child = undefined;
        throw new Error(`the example server exited with ${exitCode} while starting; see ${this.opts.logFile}`);
      }
      try {
        const res = await fetch(`${this.url}/`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`the example server did not serve ${this.url}/ within ${startTimeoutMs} ms; see ${this.opts.logFile}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops the server with SIGTERM (a clean shutdown) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    child.kill("SIGTERM");
    const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), stopTimeoutMs).unref());
    if ((await Promise.race([this.exited, timeout])) === "timeout") {
      child.kill("SIGKILL");
      await this.exited;
      throw new Error(`the example server did not stop within ${stopTimeoutMs} ms of SIGTERM`);
    }
    if (this.opts.pidFile) rmSync(this.opts.pidFile, { force: true });
  }

  /** Restarts the server with the flags args and the environment env added. */
  async restart(args: string[] = [], env: Record<string, string> = {}): Promise<void> {
    await this.stop();
    await this.start(args, env);
  }

  /** Kills the server at once; for process exit. */
  killNow(): void {
    this.child?.kill("SIGKILL");
  }
}

/**
 * The server the tests use, from the environment scripts/browser-test.sh
 * sets: DURABLE_SERVER_BIN, DURABLE_DATA_DIR, DURABLE_ADDR, DURABLE_SERVER_LOG
 * and DURABLE_SERVER_PIDFILE. Undefined when they are not set.
 */
export function serverFromEnv(): ExampleServer | undefined {
  const { DURABLE_SERVER_BIN: bin, DURABLE_DATA_DIR: dataDir, DURABLE_ADDR: addr } = process.env;
  if (!bin || !dataDir || !addr) return undefined;
  return new ExampleServer({
    bin,
    dataDir,
    addr,
    logFile: process.env.DURABLE_SERVER_LOG ?? `${dataDir}/server.log`,
    pidFile: process.env.DURABLE_SERVER_PIDFILE,
  });
}
