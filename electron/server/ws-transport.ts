// The contract's wire format over WebSocket (electron/contract.ts): { t: "call", id, name, input } in,
// { t: "result", ... } back to the caller, { t: "event", ... } to every client. The dispatcher validates each
// input against the contract; this layer only checks the envelope. Connections are accepted only from the
// server's own origin (a page on another site cannot drive the app through the user's browser: cross-site
// WebSocket hijacking, DNS rebinding) and messages above `maxPayload` close the connection (code 1009).
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { EventName, RpcErrorCode, WireMessage } from "../contract.js";

export type Dispatch = (name: string, input: unknown) => Promise<unknown>;
export type ToWireError = (e: unknown) => { message: string; code: RpcErrorCode };

export interface WsTransportOptions {
  dispatch: Dispatch;
  toWireError: ToWireError;
  /** Whether an upgrade request with this Origin and Host comes from the app's own page (server.ts decides). */
  accepts: (origin: string, host: string) => boolean;
  /** Largest message accepted, in bytes. */
  maxPayload?: number;
}

export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;

export class WsTransport {
  private readonly wss: WebSocketServer;

  constructor(private readonly opts: WsTransportOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload ?? DEFAULT_MAX_PAYLOAD, perMessageDeflate: false });
    this.wss.on("connection", (ws) => this.serve(ws));
  }

  get clientCount(): number {
    return this.wss.clients.size;
  }

  /** For the HTTP server's "upgrade" event on the API path: checks Origin and Host, then hands over to ws. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const origin = req.headers.origin;
    const host = req.headers.host;
    if (!origin || !host || !this.opts.accepts(origin, host)) {
      const body = "WebSocket connections are accepted only from this app's own origin\n";
      socket.end(`HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit("connection", ws, req));
  }

  /** Send an event to every connected client. */
  broadcast(name: EventName, payload: unknown): void {
    const data = JSON.stringify({ t: "event", name, payload } satisfies WireMessage);
    for (const ws of this.wss.clients) if (ws.readyState === ws.OPEN) ws.send(data);
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.close(1001, "server shutting down");
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    for (const ws of this.wss.clients) ws.terminate();
  }

  private serve(ws: WebSocket): void {
    ws.on("error", () => ws.terminate()); // e.g. a message above maxPayload: ws closes with 1009
    ws.on("message", (data, isBinary) => {
      const reply = (m: WireMessage) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
      };
      const invalid = (id: number, message: string) => reply({ t: "result", id, ok: false, error: { code: "invalid_input", message } });
      if (isBinary) return invalid(0, "messages are JSON text");
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return invalid(0, "a message must be JSON");
      }
      const m = msg as Partial<{ t: unknown; id: unknown; name: unknown; input: unknown }>;
      const id = typeof m?.id === "number" && Number.isSafeInteger(m.id) ? m.id : 0;
      if (typeof msg !== "object" || msg === null || Array.isArray(msg) || m.t !== "call") return invalid(id, 'a message must be { t: "call", id, name, input }');
      if (typeof m.id !== "number" || !Number.isSafeInteger(m.id)) return invalid(0, "a call needs a numeric id");
      if (typeof m.name !== "string") return invalid(id, "a call needs a name");
      this.opts.dispatch(m.name, m.input).then(
        (output) => reply({ t: "result", id, ok: true, output }),
        (e) => reply({ t: "result", id, ok: false, error: this.opts.toWireError(e) }),
      );
    });
  }
}
