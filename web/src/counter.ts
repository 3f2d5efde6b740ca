// The Counter tab: a name, the value, +1 and −1.

import { byId, describe, Serial } from "./dom";
import { ns, protocolNames } from "./rpc";

const storageKey = "durable.counter.name";

export function setupCounter(): { refresh: () => void } {
  const name = byId<HTMLInputElement>("counter-name");
  const value = byId<HTMLOutputElement>("counter-value");
  const status = byId<HTMLParagraphElement>("counter-status");
  const inc = byId<HTMLButtonElement>("counter-increment");
  const dec = byId<HTMLButtonElement>("counter-decrement");
  const panel = byId<HTMLElement>("panel-counter");

  name.value = localStorage.getItem(storageKey) ?? name.value;
  // Calls run one at a time, so the value shown is the last call's.
  const calls = new Serial((busy) => panel.classList.toggle("busy", busy));

  /** Runs call on the counter named in the field and shows the value it returns. */
  function run(what: string, call: (n: string) => Promise<{ value: bigint }>): void {
    const n = name.value.trim();
    if (n === "") {
      value.textContent = "–";
      status.textContent = "Enter a name: each name is a counter of its own.";
      return;
    }
    calls
      .run(() => call(n))
      .then(
        (res) => {
          if (name.value.trim() !== n) return; // the name changed meanwhile
          value.textContent = res.value.toString();
          value.dataset.name = n;
          status.textContent = `${what} “${n}” over ${protocolNames[ns().protocol]}.`;
          status.classList.remove("error");
        },
        (err: unknown) => {
          if (name.value.trim() !== n) return;
          status.textContent = `${what} failed: ${describe(err)}`;
          status.classList.add("error");
        },
      );
  }

  const stub = (n: string) => {
    const { counters } = ns();
    return counters.get(counters.idFromName(n));
  };
  const refresh = () => {
    value.dataset.name = "";
    run("Read", (n) => stub(n).getValue({}));
  };

  inc.addEventListener("click", () => run("Incremented", (n) => stub(n).increment({ amount: 1n })));
  dec.addEventListener("click", () => run("Decremented", (n) => stub(n).decrement({ amount: 1n })));
  let timer: number | undefined;
  name.addEventListener("input", () => {
    localStorage.setItem(storageKey, name.value.trim());
    value.textContent = "…";
    clearTimeout(timer);
    timer = window.setTimeout(refresh, 250);
  });
  refresh();
  return { refresh };
}
