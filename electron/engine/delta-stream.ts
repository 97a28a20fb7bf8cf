// One generation's text deltas as an async iterable plus its final result: the mechanism shared by the
// in-process ChatSession (engine.ts) and the worker-backed RemoteSession (host.ts).
//
//   const stream = new DeltaStream();
//   ...producer: stream.push(delta) for each delta...
//   return stream.generation(resultPromise, cancel);   // ends the iteration when resultPromise settles
export class DeltaStream {
  private readonly queue: string[] = [];
  private waiter: (() => void) | null = null;
  private done = false;
  private failure: unknown = null;
  /** Deltas (for a local session: token ids) received so far; the producer keeps it current. */
  tokens = 0;

  push(delta: string): void {
    this.queue.push(delta);
    this.wake();
  }

  /** The Generation a caller iterates: it ends when `result` settles, and rethrows a rejection. */
  generation<R>(result: Promise<R>, cancel: () => void): { readonly result: Promise<R>; readonly tokens: number; cancel(): void } & AsyncIterable<string> {
    result.then(
      () => this.finish(null),
      (e) => this.finish(e ?? new Error("generation failed")),
    );
    const self = this;
    return {
      result,
      cancel,
      get tokens() {
        return self.tokens;
      },
      [Symbol.asyncIterator]: () => self.iterate(cancel),
    };
  }

  private finish(failure: unknown): void {
    this.failure = failure;
    this.done = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async *iterate(cancel: () => void): AsyncGenerator<string> {
    // A consumer that stops iterating early (break/return) does not want more tokens: cancel.
    try {
      for (;;) {
        if (this.queue.length > 0) {
          yield this.queue.shift()!;
          continue;
        }
        if (this.done) {
          if (this.failure) throw this.failure;
          return;
        }
        await new Promise<void>((r) => (this.waiter = r));
      }
    } finally {
      if (!this.done) cancel();
    }
  }
}
