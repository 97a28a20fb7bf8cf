// One engine, one generation at a time: the chat UI and the OpenAI-compatible API take turns through this slot.
// The engine worker could run two sessions side by side, but on a CPU they would share the cores and each answer
// would take twice as long; on one GPU they would fight for memory bandwidth the same way. So generations run one
// after the other, and waiting is fair: first come, first served (FIFO), whoever asks.
//
//   const release = await queue.acquire(signal, "api");   // waits its turn; a signal aborted while waiting leaves the line
//   try { ... generate ... } finally { release(); }
//   queue.tryAcquire("chat")                               // the chat UI: now or "busy", never a silent wait
//
// The holder's label says who is generating, for the busy message ("the API is answering a request").

export type SlotHolder = "chat" | "api";

interface Waiter {
  who: SlotHolder;
  grant: (release: () => void) => void;
  fail: (e: Error) => void;
}

export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(`${limit} requests are already waiting for the model; try again when some have finished`);
    this.name = "QueueFullError";
  }
}

export class GenerationQueue {
  private holder: SlotHolder | null = null;
  private readonly waiting: Waiter[] = [];

  /** maxWaiting: requests beyond this many waiting are refused (QueueFullError) rather than queued without bound. */
  constructor(private readonly maxWaiting = 64) {}

  /** Who holds the slot now (null: free). */
  get busyWith(): SlotHolder | null {
    return this.holder;
  }

  /** Requests waiting behind the holder. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /** The slot now, or null if someone holds it or is waiting for it (no jumping the line). */
  tryAcquire(who: SlotHolder): (() => void) | null {
    if (this.holder !== null || this.waiting.length > 0) return null;
    return this.grantTo(who);
  }

  /** The slot once every earlier request is done; rejects with the signal's reason if aborted while waiting. */
  acquire(signal: AbortSignal | undefined, who: SlotHolder): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(abortError());
    const now = this.tryAcquire(who);
    if (now) return Promise.resolve(now);
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(new QueueFullError(this.maxWaiting));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        who,
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: reject,
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(abortError());
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  private grantTo(who: SlotHolder): () => void {
    this.holder = who;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holder = null;
      const next = this.waiting.shift();
      if (next) next.grant(this.grantTo(next.who));
    };
  }
}

function abortError(): Error {
  const e = new Error("the request was cancelled while it waited for the model");
  e.name = "AbortError";
  return e;
}
