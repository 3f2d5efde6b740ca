// Small DOM helpers.

/** Returns the element with the id, which the page must have. */
export function byId<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error(`the page has no #${id}`);
  }
  return el as T;
}

/** Creates an element with a class and text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: { className?: string; text?: string; testid?: string; title?: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.text !== undefined) e.textContent = props.text;
  if (props.testid) e.dataset.testid = props.testid;
  if (props.title) e.title = props.title;
  e.append(...children);
  return e;
}

/** Formats a Unix time in milliseconds as a local time of day. */
export function clock(ms: number | bigint): string {
  return new Date(Number(ms)).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** A short message for an error thrown by a call. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A random suffix for default names: "tab-3f9a". */
export function randomSuffix(): string {
  return Math.random().toString(16).slice(2, 6);
}

/**
 * Serial runs async jobs one after another, so that the last job's result is
 * the one shown even when responses would arrive out of order.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  constructor(private readonly onBusy: (busy: boolean) => void = () => {}) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    this.pending++;
    this.onBusy(true);
    const next = this.tail.then(job, job);
    this.tail = next.then(
      () => this.done(),
      () => this.done(),
    );
    return next;
  }

  private done(): void {
    this.pending--;
    if (this.pending === 0) this.onBusy(false);
  }
}

/**
 * ObjectSocket holds the page's WebSocket to one object's Fetch route, which
 * speaks JSON. Opening another replaces it: from then on, the replaced
 * socket's messages and close are ignored, as are those of a socket closed
 * with close().
 */
export class ObjectSocket<In> {
  private ws: WebSocket | undefined;

  /**
   * Opens a socket to path, an object's Fetch route from its namespace's
   * objectPath, with the non-empty values of query as its query string.
   * Messages that are not JSON go to unreadable, or are dropped.
   */
  open(
    path: string,
    query: Record<string, string>,
    on: { message(m: In): void; unreadable?(data: string): void; close(ev: CloseEvent): void },
  ): void {
    const url = new URL(path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(query)) {
      if (v !== "") url.searchParams.set(k, v);
    }
    const socket = new WebSocket(url);
    this.ws = socket;
    socket.addEventListener("message", (ev) => {
      if (this.ws !== socket) return;
      let m: In;
      try {
        m = JSON.parse(String(ev.data)) as In;
      } catch {
        on.unreadable?.(String(ev.data));
        return;
      }
      on.message(m);
    });
    socket.addEventListener("close", (ev) => {
      if (this.ws !== socket) return;
      this.ws = undefined;
      on.close(ev);
    });
  }

  /** Sends m as JSON if the socket is open, and reports whether it did. */
  send(m: unknown): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  /** Closes the socket, whose close then goes unreported, and reports whether there was one. */
  close(code: number, reason: string): boolean {
    const socket = this.ws;
    if (!socket) return false;
    this.ws = undefined;
    socket.close(code, reason);
    return true;
  }
}
