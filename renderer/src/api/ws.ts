// The contract's wire format over a WebSocket (`moe-studio serve`): calls are queued while disconnected, calls in
// flight when the socket drops fail with code "disconnected", and the socket reconnects with exponential backoff.
import type { CallInput, CallName, CallOutput, ConnectionState, EventName, EventPayload, Transport, WireMessage } from "./types.js";
import { ApiError } from "./types.js";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  frame: string;
  sent: boolean;
}

export interface WsOptions {
  /** Creates the socket; tests can pass a constructor from `ws`. */
  WebSocketImpl?: typeof WebSocket;
  minDelayMs?: number;
  maxDelayMs?: number;
}

export function wsUrlFor(location: { protocol: string; host: string }): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api`;
}

export class WebSocketTransport implements Transport {
  readonly kind = "ws" as const;
  private socket: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<string, Set<(payload: unknown) => void>>();
  private readonly connListeners = new Set<(state: ConnectionState) => void>();
  private state: ConnectionState = "connecting";
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closedByUser = false;
  private readonly Impl: typeof WebSocket;
  private readonly minDelay: number;
  private readonly maxDelay: number;

  constructor(
    private readonly url: string,
    options: WsOptions = {},
  ) {
    this.Impl = options.WebSocketImpl ?? WebSocket;
    this.minDelay = options.minDelayMs ?? 300;
    this.maxDelay = options.maxDelayMs ?? 5000;
    this.open();
  }

  connection(): ConnectionState {
    return this.state;
  }

  onConnection(listener: (state: ConnectionState) => void): () => void {
    this.connListeners.add(listener);
    return () => this.connListeners.delete(listener);
  }

  call<N extends CallName>(name: N, input: CallInput<N>): Promise<CallOutput<N>> {
    const id = this.nextId++;
    const frame = JSON.stringify({ t: "call", id, name, input } satisfies WireMessage);
    return new Promise<CallOutput<N>>((resolve, reject) => {
      const p: Pending = { resolve: resolve as (v: unknown) => void, reject, frame, sent: false };
      this.pending.set(id, p);
      this.flush();
    });
  }

  on<E extends EventName>(event: E, listener: (payload: EventPayload<E>) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    const l = listener as (payload: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  }

  close(): void {
    this.closedByUser = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close();
    this.setState("closed");
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    for (const l of this.connListeners) l(state);
  }

  private open(): void {
    if (this.closedByUser) return;
    let socket: WebSocket;
    try {
      socket = new this.Impl(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.setState("open");
      this.flush();
    };
    socket.onmessage = (ev: MessageEvent) => this.receive(typeof ev.data === "string" ? ev.data : String(ev.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      // Calls already on the wire will never be answered by this connection.
      for (const [id, p] of this.pending) {
        if (p.sent) {
          this.pending.delete(id);
          p.reject(new ApiError("disconnected", "Lost the connection to MoE Studio."));
        }
      }
      this.setState(this.closedByUser ? "closed" : "connecting");
      this.scheduleReconnect();
    };
    socket.onerror = () => {
      /* onclose follows */
    };
  }

  private scheduleReconnect(): void {
    if (this.closedByUser || this.timer) return;
    const delay = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    this.attempt++;
    if (this.attempt > 2) this.setState("closed");
    this.timer = setTimeout(() => {
      this.timer = null;
      this.open();
    }, delay);
  }

  private flush(): void {
    const s = this.socket;
    if (!s || s.readyState !== 1) return;
    for (const p of this.pending.values()) {
      if (!p.sent) {
        s.send(p.frame);
        p.sent = true;
      }
    }
  }

  private receive(data: string): void {
    let msg: WireMessage;
    try {
      msg = JSON.parse(data) as WireMessage;
    } catch {
      return;
    }
    if (msg.t === "result") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.output);
      else p.reject(new ApiError(msg.error?.code ?? "internal", msg.error?.message ?? "Unknown error"));
    } else if (msg.t === "event") {
      const set = this.listeners.get(msg.name);
      if (set) for (const l of [...set]) l(msg.payload);
    }
  }
}
