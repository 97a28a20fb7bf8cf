// `moe-studio serve`: the desktop app's UI for a browser. One HTTP server bound to 127.0.0.1 serves the built
// renderer (renderer/dist) with the app's CSP, and its /api path upgrades to a WebSocket that speaks the contract's
// wire format to the same services the Electron main process runs (createAppServices).
//
// Every request needs the server's token (auth.ts), the UI's files too: they hold nothing secret, but a 401 for
// everything but the token exchange leaves nothing to reason about. Paths in calls are contained to the data
// folder, --model and --allow-dir folders (services/path-policy.ts).
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { securityHeaders } from "../window-options.js";
import { hasIndex, readStatic } from "./static.js";
import { checkToken, newToken, TOKEN_ENV, TOKEN_PARAM, TokenAuth } from "./auth.js";
import { isLoopback } from "./openai/http.js";
import { DEFAULT_MAX_PAYLOAD, WsTransport, type Dispatch, type ToWireError } from "./ws-transport.js";
import type { EventName } from "../contract.js";
import type { EngineOptions } from "../engine/load-options.js";
import type { ApiServerControl } from "./openai/control.js";
import type { RunningApiServer } from "./openai/http.js";

export const API_PATH = "/api";

/** What the server needs from the services layer: createAppServices + createDispatcher + toWireError. */
export interface ServerBackend {
  dispatch: Dispatch;
  toWireError: ToWireError;
  dispose: () => Promise<void> | void;
  /** The OpenAI-compatible API's switch (the app's services have one). */
  api?: ApiServerControl;
}

export interface ServerOptions {
  /** 0 picks a free port. */
  port: number;
  /**
   * Default 127.0.0.1. Any other address (a server others reach, `web_host` of a deploy config) needs `token` set
   * by whoever deploys: the printed URL is then not the only way in, and nothing binds without a key.
   */
  host?: string;
  dataDir: string;
  /** A model folder to load at start (clients may also read files under it). */
  model?: string;
  /** A PEFT adapter folder `model` runs with, applied unmerged (clients may read files under it). */
  adapter?: string;
  /** How models load (`--threads`, `--kv-cache`, `--device`); what is left out, the app's settings or the engine choose. */
  engine?: EngineOptions;
  /** Folders besides the data folder whose files clients may name (read and write). */
  allowDirs?: string[];
  /** The token clients must present (checkToken's rules); default: a new random one. */
  token?: string;
  /** Lines about the engine worker (it died, it is back): `moe-studio serve` prints them on stderr. */
  log?: (line: string) => void;
  /** renderer/dist */
  staticDir: string;
  /** `--api`: the OpenAI-compatible API on its own port (host other than 127.0.0.1 needs a key). */
  api?: { host?: string; port: number; key: string | null };
  maxPayload?: number;
  /** Builds the services; the default is the app's own (electron/services). Receives the event sink. */
  backend?: (emit: (name: EventName, payload: unknown) => void) => Promise<ServerBackend> | ServerBackend;
}

export interface RunningServer {
  /** http://127.0.0.1:PORT/ */
  url: string;
  /** The URL to open: `url` with ?token=...; what `moe-studio serve` prints. */
  urlWithToken: string;
  token: string;
  port: number;
  /** The OpenAI-compatible API, when started with `api`. */
  api: RunningApiServer | null;
  /** Stops accepting connections, closes the WebSockets, and disposes the services (worker killed, db closed). */
  close(): Promise<void>;
}

export class MissingRendererError extends Error {
  constructor(staticDir: string) {
    super(`the UI is not built (${staticDir}/index.html is missing): run "npm run build:renderer"`);
    this.name = "MissingRendererError";
  }
}

async function appBackend(opts: ServerOptions, emit: (name: EventName, payload: unknown) => void): Promise<ServerBackend> {
  const { createAppServices } = await import("../services/app.js");
  const { createDispatcher, toWireError } = await import("../rpc.js");
  const services = await createAppServices({
    dataDir: opts.dataDir,
    emit,
    transport: "ws",
    containPaths: {
      dirs: [...(opts.model ? [{ dir: opts.model, write: false }] : []), ...(opts.adapter ? [{ dir: opts.adapter, write: false }] : []), ...(opts.allowDirs ?? []).map((dir) => ({ dir, write: true }))],
      hint: "Start moe-studio serve with --allow-dir DIR to allow another folder.",
    },
    ...(opts.model ? { initialModel: opts.model } : {}),
    ...(opts.model && opts.adapter ? { initialAdapter: opts.adapter } : {}),
    ...(opts.engine ? { engine: opts.engine } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  const dispatch = createDispatcher(services.handlers);
  return { dispatch: (name, input) => dispatch(name, input), toWireError, dispose: () => services.dispose(), api: services.api };
}

/** A Host header: a name or IPv4 address, or a bracketed IPv6 address, and a port. */
const HOST_HEADER = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? "127.0.0.1";
  const loopback = isLoopback(host);
  if (!loopback && opts.token === undefined) {
    throw new Error(`the web UI on ${host} (not this machine only) needs a token you set (--token, ${TOKEN_ENV} or web_token): anyone who can reach it could use the app`);
  }
  if (!hasIndex(opts.staticDir)) throw new MissingRendererError(opts.staticDir);
  const token = opts.token === undefined ? newToken() : checkToken(opts.token, "token");

  let port = 0;
  // Which Host headers name this server. On loopback only 127.0.0.1 / localhost with our port: a page on
  // evil.example resolving to 127.0.0.1 sends Host: evil.example (DNS rebinding). Bound to another address the
  // server is reached by whatever name or address the user types (a LAN IP, a DNS name, a reverse proxy's), so any
  // well-formed Host is taken: every request needs the token there, and its cookie belongs to the name the browser
  // used, so a rebinding page has none. Either way a WebSocket's Origin must be the page the Host names.
  const hostOk = (h: string) => (loopback ? h === `127.0.0.1:${port}` || h === `localhost:${port}` : HOST_HEADER.test(h));
  // (https: behind a TLS-terminating reverse proxy, which passes the Host on)
  const originOk = (origin: string, h: string) => hostOk(h) && (origin === `http://${h}` || (!loopback && origin === `https://${h}`));
  let headers: Record<string, string> = {};
  // the CSP names the WebSocket URL the page may open: the one of the Host it was loaded from
  const headersFor = (h: string | undefined) => (loopback || !h ? headers : securityHeaders({ connectSrc: [`ws://${h}`, `wss://${h}`] }));
  // made once the port is known (the cookie's name holds it); until then nothing is allowed
  let auth: TokenAuth | null = null;

  let transport: WsTransport | null = null;
  // (events before the transport exists have no client to go to)
  const emit = (name: EventName, payload: unknown) => transport?.broadcast(name, payload);
  const backend = await (opts.backend ? opts.backend(emit) : appBackend(opts, emit));

  transport = new WsTransport({
    dispatch: backend.dispatch,
    toWireError: backend.toWireError,
    accepts: originOk,
    maxPayload: opts.maxPayload ?? DEFAULT_MAX_PAYLOAD,
  });

  const server = createServer((req, res) => {
    handleHttp(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8", ...headers });
      res.end("internal error\n");
    });
  });

  async function handleHttp(req: IncomingMessage, res: ServerResponse) {
    const text = (status: number, body: string, extra: Record<string, string> = {}) => {
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers, ...extra });
      res.end(req.method === "HEAD" ? undefined : body + "\n");
    };
    if (!req.headers.host || !hostOk(req.headers.host)) return text(421, "unknown host");
    const { rawPath, query } = splitUrl(req.url);
    if (query.has(TOKEN_PARAM)) {
      // the token exchange: the cookie, and the same URL without the token
      if (!auth?.matches(query.get(TOKEN_PARAM))) return unauthorized(text, "this token is not the server's");
      query.delete(TOKEN_PARAM);
      const rest = query.toString();
      // "//evil.example/" as a Location would be another site: such a path goes to "/"
      const path = rawPath.startsWith("/") && !rawPath.startsWith("//") && !rawPath.includes("\\") ? rawPath : "/";
      return text(302, "signed in", { Location: path + (rest ? `?${rest}` : ""), "Set-Cookie": auth.setCookie(), "Cache-Control": "no-store" });
    }
    if (!auth?.allows(req, query)) return unauthorized(text, "no token");
    if (req.method !== "GET" && req.method !== "HEAD") return text(405, "method not allowed", { Allow: "GET, HEAD" });
    if (rawPath === API_PATH) return text(426, "the API is a WebSocket", { Upgrade: "websocket" });
    const r = await readStatic(opts.staticDir, rawPath);
    if (r.status !== 200) return text(r.status, r.message);
    const isHtml = r.type.startsWith("text/html");
    res.writeHead(200, {
      "Content-Type": r.type,
      "Content-Length": String(r.body.length),
      // hashed assets can be cached; index.html must be revalidated so a rebuild shows up on reload
      "Cache-Control": isHtml ? "no-cache" : "public, max-age=3600",
      ...headersFor(req.headers.host),
    });
    res.end(req.method === "HEAD" ? undefined : r.body);
  }

  server.on("upgrade", (req, socket, head) => {
    const { rawPath: path, query } = splitUrl(req.url);
    if (!auth?.allows(req, query)) {
      const body = "the API needs this server's token (its cookie, Authorization: Bearer <token>, or ?token=)\n";
      socket.end(`HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    if (path !== API_PATH) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    transport!.handleUpgrade(req, socket, head);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    await transport.close();
    await backend.dispose();
    throw e;
  }
  port = (server.address() as AddressInfo).port;
  let api: RunningApiServer | null = null;
  if (opts.api) {
    try {
      if (!backend.api) throw new Error("these services have no API server");
      api = await backend.api.start(opts.api);
    } catch (e) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await transport.close();
      await backend.dispose();
      throw e;
    }
  }
  auth = new TokenAuth(token, port);
  headers = securityHeaders({ connectSrc: [`ws://127.0.0.1:${port}`, `ws://localhost:${port}`] });

  let closing: Promise<void> | null = null;
  // the URL to print: loopback's, also for a wildcard bind (0.0.0.0 / :: listen on it too), else the address bound
  const shown = loopback || host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `http://${shown}:${port}/`;
  return {
    url,
    urlWithToken: `${url}?${TOKEN_PARAM}=${encodeURIComponent(token)}`,
    token,
    port,
    api,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await transport!.close();
        server.closeAllConnections();
        await closed;
        await backend.dispose();
      })();
      return closing;
    },
  };
}

/** The request target's path (still percent-encoded, for readStatic) and its query. */
function splitUrl(target: string | undefined): { rawPath: string; query: URLSearchParams } {
  const t = (target ?? "/").split("#")[0];
  const q = t.indexOf("?");
  return q < 0 ? { rawPath: t, query: new URLSearchParams() } : { rawPath: t.slice(0, q), query: new URLSearchParams(t.slice(q + 1)) };
}

type TextReply = (status: number, body: string, extra?: Record<string, string>) => void;

function unauthorized(text: TextReply, why: string): void {
  text(
    401,
    `MoE Studio: ${why}. Open the URL that "moe-studio serve" printed (it ends in ?${TOKEN_PARAM}=...), ` +
      "or send the token as Authorization: Bearer <token>.",
    { "WWW-Authenticate": 'Bearer realm="moe-studio"', "Cache-Control": "no-store" },
  );
}
