// A model hub on 127.0.0.1 for tests: serves fixture model folders the way huggingface.co does (and ModelScope's
// two download calls), with faults a test can switch on, and a log of every request with the bytes it really sent.
//
//   const hub = await startHubServer({ repos: { "test/qwen2-moe": { dir: fixtureModel("qwen2_moe") } } });
//   hub.url                         // http://127.0.0.1:PORT (an HF_ENDPOINT)
//   hub.faults.corrupt.set("model-00002-of-00003.safetensors", 1)   // its next transfer has a byte flipped
//   hub.log                         // [{ method, path, range, status, sent, file }]
//   await hub.close();
//
// Hugging Face routes (what electron/library/hub.ts calls):
//   GET /api/models/{owner}/{name}/revision/{rev}?blobs=true   siblings with size, blobId (git sha1), and lfs { sha256, size }
//                                                              for *.safetensors and tokenizer.json (as the hub stores them)
//   GET /{owner}/{name}/resolve/{rev}/{file}                   LFS files: 302 to <cdn origin>/cdn/{owner}/{name}/{file}; others here
//   GET /cdn/{owner}/{name}/{file}  (on a second port)         the bytes: Range -> 206 + Content-Range, ETag, Accept-Ranges
//   GET /api/models?search=Q&limit=N&config=true               [{ id, downloads, likes, gated, tags, config: { model_type } }]
//   a gated repo: info is public, files answer 401 (X-Error-Code: GatedRepo) without "Authorization: Bearer <token>"
//   an unknown repo: 401 X-Error-Code: RepoNotFound (as the hub does); an unknown file: 404 X-Error-Code: EntryNotFound
// ModelScope routes: GET /api/v1/models/{o}/{n}/repo/files?Revision=R&Recursive=true, GET /api/v1/models/{o}/{n}/repo?Revision=R&FilePath=F
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface HubRepo {
  /** Folder whose files the repo holds. */
  dir: string;
  /** Extra files (path -> content) beside the folder's, e.g. a README and a pytorch_model.bin the filter must skip. */
  extra?: Record<string, string>;
  /** Files need this token. */
  gatedToken?: string;
  /** The listing leaves out sizes and LFS metadata (as a mirror without ?blobs=true support does). */
  noSizes?: boolean;
  /** Files listed with their size but no checksum: no lfs / blobId (HF), no Sha256 (ModelScope). */
  noChecksum?: string[];
}

export interface HubLogEntry {
  method: string;
  path: string;
  range: string | null;
  auth: boolean;
  status: number;
  /** Body bytes actually written to the socket. */
  sent: number;
  /** The repo file this request served bytes of, if any. */
  file: string | null;
}

export interface HubFaults {
  /** file -> how many of its next transfers have one byte flipped. */
  corrupt: Map<string, number>;
  /** file -> after how many body bytes the connection is destroyed (once). */
  dropAfter: Map<string, number>;
  /** file -> after how many body bytes the server stops sending (and never ends) — once. */
  stallAfter: Map<string, number>;
  /** Body bytes per second (0 = unthrottled). */
  bytesPerSecond: number;
}

export interface HubServer {
  url: string;
  log: HubLogEntry[];
  faults: HubFaults;
  /** Log entries that sent bytes of `file`. */
  transfers(file: string): HubLogEntry[];
  close(): Promise<void>;
}

interface FileEntry {
  path: string;
  data: Buffer;
  sha256: string;
  gitSha1: string;
  lfs: boolean;
}

function repoFiles(repo: HubRepo): FileEntry[] {
  const out: FileEntry[] = [];
  const add = (path: string, data: Buffer) =>
    out.push({
      path,
      data,
      sha256: createHash("sha256").update(data).digest("hex"),
      gitSha1: createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex"),
      lfs: path.endsWith(".safetensors") || path === "tokenizer.json" || path.endsWith(".bin"),
    });
  for (const f of readdirSync(repo.dir).sort()) {
    const p = join(repo.dir, f);
    if (statSync(p).isFile()) add(f, readFileSync(p));
  }
  for (const [path, content] of Object.entries(repo.extra ?? {})) add(path, Buffer.from(content));
  return out;
}

const DEFAULT_CHUNK = 16 * 1024;

/** opts.chunkBytes: the size of each body write (default 16 KiB: fine-grained progress and faults for tests). */
export async function startHubServer(opts: { repos: Record<string, HubRepo>; chunkBytes?: number }): Promise<HubServer> {
  const CHUNK = opts.chunkBytes ?? DEFAULT_CHUNK;
  const repos = new Map<string, { repo: HubRepo; files: Map<string, FileEntry>; modelType: string | null }>();
  for (const [id, repo] of Object.entries(opts.repos)) {
    if (!existsSync(repo.dir)) throw new Error(`hub-server: ${repo.dir} does not exist`);
    const files = new Map(repoFiles(repo).map((f) => [f.path, f]));
    const cfg = files.get("config.json");
    const modelType = cfg ? ((JSON.parse(cfg.data.toString("utf8")) as { model_type?: string }).model_type ?? null) : null;
    repos.set(id, { repo, files, modelType });
  }
  const log: HubLogEntry[] = [];
  const faults: HubFaults = { corrupt: new Map(), dropAfter: new Map(), stallAfter: new Map(), bytesPerSecond: 0 };
  const sockets = new Set<import("node:net").Socket>();

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const entry: HubLogEntry = {
      method: req.method ?? "GET",
      path: req.url ?? "/",
      range: (req.headers.range as string | undefined) ?? null,
      auth: !!req.headers.authorization,
      status: 0,
      sent: 0,
      file: null,
    };
    log.push(entry);
    handle(req, res, entry).catch((e) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    });
  };
  // The "CDN" is a second listener (another port, so another origin, as cdn-lfs.hf.co is): the access token must
  // not follow a redirect there.
  const server = createServer(onRequest);
  const cdn = createServer(onRequest);
  for (const s of [server, cdn]) {
    s.on("connection", (sock) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
    });
  }
  let cdnOrigin = "";

  function json(res: ServerResponse, entry: HubLogEntry, status: number, body: unknown, headers: Record<string, string> = {}) {
    entry.status = status;
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  }

  function denied(req: IncomingMessage, repo: HubRepo): boolean {
    return !!repo.gatedToken && req.headers.authorization !== `Bearer ${repo.gatedToken}`;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, entry: HubLogEntry) {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    // GET /api/models?search=
    if (url.pathname === "/api/models") {
      const q = (url.searchParams.get("search") ?? "").toLowerCase();
      const hits = [...repos.entries()]
        .filter(([id]) => id.toLowerCase().includes(q))
        .map(([id, r]) => ({ id, downloads: 100, likes: 1, gated: r.repo.gatedToken ? "manual" : false, tags: r.modelType ? [r.modelType] : [], config: r.modelType ? { model_type: r.modelType } : {} }));
      return json(res, entry, 200, hits.slice(0, Number(url.searchParams.get("limit") ?? 30)));
    }
    // HF model info
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "revision") {
      const id = `${parts[2]}/${parts[3]}`;
      const r = repos.get(id);
      if (!r) return json(res, entry, 401, { error: "Repository Not Found" }, { "X-Error-Code": "RepoNotFound" });
      return json(res, entry, 200, {
        id,
        sha: "0123456789abcdef0123456789abcdef01234567",
        gated: r.repo.gatedToken ? "manual" : false,
        siblings: [...r.files.values()].map((f) => r.repo.noSizes ? { rfilename: f.path } : r.repo.noChecksum?.includes(f.path) ? { rfilename: f.path, size: f.data.length } : ({
          rfilename: f.path,
          size: f.data.length,
          blobId: f.lfs ? "lfs-pointer-oid" : f.gitSha1,
          ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } } : {}),
        })),
      });
    }
    // ModelScope listing and file
    if (parts[0] === "api" && parts[1] === "v1" && parts[2] === "models" && parts[5] === "repo") {
      const id = `${parts[3]}/${parts[4]}`;
      const r = repos.get(id);
      if (parts[6] === "files") {
        if (!r) return json(res, entry, 200, { Code: 10010205001, Message: `model ${id} not exists`, Success: false });
        return json(res, entry, 200, {
          Code: 200,
          Success: true,
          Data: { Files: [...r.files.values()].map((f) => ({ Name: f.path, Path: f.path, Type: "blob", Size: f.data.length, Sha256: r.repo.noChecksum?.includes(f.path) ? "" : f.sha256, Revision: "master" })) },
        });
      }
      if (!r) return json(res, entry, 404, { Code: 404, Message: "not found" });
      const f = r.files.get(url.searchParams.get("FilePath") ?? "");
      if (!f) return json(res, entry, 404, { Code: 404, Message: "file not found" });
      return serveBytes(req, res, entry, f);
    }
    // HF resolve
    if (parts[2] === "resolve") {
      const id = `${parts[0]}/${parts[1]}`;
      const r = repos.get(id);
      if (!r) return json(res, entry, 401, { error: "Repository Not Found" }, { "X-Error-Code": "RepoNotFound" });
      if (denied(req, r.repo)) return json(res, entry, 401, { error: "Access to this model is restricted" }, { "X-Error-Code": "GatedRepo" });
      const path = parts.slice(4).join("/");
      const f = r.files.get(path);
      if (!f) return json(res, entry, 404, { error: "Entry not found" }, { "X-Error-Code": "EntryNotFound" });
      if (f.lfs) {
        entry.status = 302;
        res.writeHead(302, { Location: `${cdnOrigin}/cdn/${id}/${path.split("/").map(encodeURIComponent).join("/")}`, "X-Linked-Size": String(f.data.length), "X-Linked-Etag": `"${f.sha256}"` });
        return res.end();
      }
      return serveBytes(req, res, entry, f);
    }
    // the "CDN"
    if (parts[0] === "cdn") {
      const r = repos.get(`${parts[1]}/${parts[2]}`);
      const f = r?.files.get(parts.slice(3).join("/"));
      if (!f) return json(res, entry, 404, { error: "not found" });
      return serveBytes(req, res, entry, f);
    }
    return json(res, entry, 404, { error: `no route for ${url.pathname}` });
  }

  async function serveBytes(req: IncomingMessage, res: ServerResponse, entry: HubLogEntry, f: FileEntry) {
    entry.file = f.path;
    const size = f.data.length;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec((req.headers.range as string | undefined) ?? "");
    if (m) {
      start = Number(m[1]);
      if (m[2]) end = Math.min(Number(m[2]), size - 1);
      if (start >= size) {
        entry.status = 416;
        res.writeHead(416, { "Content-Range": `bytes */${size}` });
        return res.end();
      }
      status = 206;
    }
    let body = Buffer.from(f.data.subarray(start, end + 1));
    const bad = faults.corrupt.get(f.path) ?? 0;
    if (bad > 0 && body.length > 0) {
      faults.corrupt.set(f.path, bad - 1);
      body[Math.floor(body.length / 2)] ^= 0xff;
    }
    entry.status = status;
    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(body.length),
      "Accept-Ranges": "bytes",
      ETag: `"${f.sha256}"`,
    };
    if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    res.writeHead(status, headers);
    if (req.method === "HEAD") return res.end();
    const drop = faults.dropAfter.get(f.path);
    const stall = faults.stallAfter.get(f.path);
    let off = 0;
    while (off < body.length) {
      let n = Math.min(CHUNK, body.length - off);
      if (drop !== undefined) n = Math.min(n, Math.max(0, drop - off));
      if (stall !== undefined) n = Math.min(n, Math.max(0, stall - off));
      if (n > 0) {
        const ok = res.write(body.subarray(off, off + n));
        off += n;
        entry.sent += n;
        if (!ok) await new Promise<void>((r) => res.once("drain", () => r()));
        if (faults.bytesPerSecond > 0) await new Promise((r) => setTimeout(r, (n / faults.bytesPerSecond) * 1000));
        if (res.destroyed) return;
      }
      if (drop !== undefined && off >= drop) {
        faults.dropAfter.delete(f.path);
        await new Promise((r) => setTimeout(r, 20)); // let the written bytes leave before the reset
        res.socket?.destroy();
        return;
      }
      if (stall !== undefined && off >= stall) {
        faults.stallAfter.delete(f.path);
        return; // never ends: the client's stall timer must fire
      }
    }
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => cdn.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  cdnOrigin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    faults,
    transfers: (file) => log.filter((e) => e.file === file && e.sent > 0),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        cdn.close();
        server.close(() => resolve());
      }),
  };
}
