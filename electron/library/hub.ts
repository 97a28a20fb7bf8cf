// The two model hubs we download from, behind one small client: the Hugging Face hub (or a mirror of it such as
// https://hf-mirror.com, same API) and ModelScope. Nothing here touches the disk; the downloader does.
//
// Hugging Face (the hub's REST API, as huggingface_hub uses it):
//   GET {ep}/api/models/{repo}/revision/{rev}?blobs=true  -> { id, sha, gated, siblings: [{ rfilename, size, blobId,
//                                                              lfs?: { sha256, size } }] }
//   GET {ep}/{repo}/resolve/{rev}/{path}                  -> 302 to a CDN (LFS files) or 200; Range requests -> 206
//   GET {ep}/api/models?search=Q&limit=N&config=true      -> [{ id, downloads, likes, tags, gated, config?: { model_type } }]
//   Errors: 401 with X-Error-Code RepoNotFound (the hub hides whether a private repo exists), GatedRepo; 403 when a
//   token lacks access to a gated repo; 404 EntryNotFound for a file.
// ModelScope (its SDK's calls, modelscope/hub/api.py and file_download.py; not exercised against the live service here):
//   GET {ep}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true
//                                                         -> { Code: 200, Data: { Files: [{ Path, Type: blob|tree, Size, Sha256 }] } }
//   GET {ep}/api/v1/models/{repo}/repo?Revision={rev}&FilePath={path}   -> the file (Range supported)
//
// The access token goes only to the hub's own origin: a redirect to a CDN on another host is followed without it.
import { SUPPORTED_MODEL_TYPES } from "./params.js";

export type HubSource = "hf" | "modelscope";

export const DEFAULT_ENDPOINTS: Record<HubSource, string> = {
  hf: "https://huggingface.co",
  modelscope: "https://www.modelscope.cn",
};

export const DEFAULT_REVISION: Record<HubSource, string> = { hf: "main", modelscope: "master" };

/** What went wrong, in words a user can act on; `kind` lets the UI react (ask for a token, say "not found"). */
/** no_checksum: checksums were required and the hub lists a file without one (nothing was fetched). */
export type HubErrorKind = "gated" | "not_found" | "stalled" | "checksum" | "no_checksum" | "network" | "http" | "invalid";

export class HubError extends Error {
  /** An RpcError code when one fits (asRpcError picks it up), so calls answer not_found rather than internal. */
  readonly code: string | undefined;
  constructor(
    readonly kind: HubErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "HubError";
    this.code = kind === "not_found" ? "not_found" : kind === "invalid" ? "invalid_input" : undefined;
  }
}

export interface RemoteFile {
  path: string;
  size: number;
  /** sha256 of the content (HF: LFS files; ModelScope: every file), or null. */
  sha256: string | null;
  /** git blob id (sha1 of "blob <size>\0" + content) for HF files stored in git rather than LFS, or null. */
  gitSha1: string | null;
}

export interface RepoListing {
  repo: string;
  source: HubSource;
  /** The commit the listing is of when the hub says (HF `sha`), else the revision asked for. */
  revision: string;
  gated: boolean;
  files: RemoteFile[];
}

export interface SearchHit {
  repo: string;
  modelType: string | null;
  downloads: number;
  likes: number;
  gated: boolean;
}

export interface HubOptions {
  source: HubSource;
  /** Base URL without a trailing slash; default DEFAULT_ENDPOINTS[source]. */
  endpoint?: string;
  token?: string | null;
  /** No byte (or no response) for this long aborts a request with a "stalled" error. Default 30 s. */
  stallMs?: number;
}

const REPO_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** "owner/name" or a clear error (the id also becomes a folder name, so nothing else is accepted). */
export function checkRepoId(repo: string): string {
  const r = repo.trim();
  if (!REPO_RE.test(r) || r.includes("..")) throw new HubError("invalid", `"${repo}" is not a model id: expected owner/name, e.g. Qwen/Qwen3-0.6B`);
  return r;
}

export function normalizeEndpoint(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new HubError("invalid", `endpoint "${url}" is not a URL (e.g. https://hf-mirror.com)`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new HubError("invalid", `endpoint "${url}" must be an http(s) URL`);
  return u.toString().replace(/\/+$/, "");
}

const encPath = (p: string) => p.split("/").map(encodeURIComponent).join("/");

export class HubClient {
  readonly source: HubSource;
  readonly endpoint: string;
  readonly stallMs: number;
  private readonly token: string | null;

  constructor(opts: HubOptions) {
    this.source = opts.source;
    this.endpoint = normalizeEndpoint(opts.endpoint || DEFAULT_ENDPOINTS[opts.source]);
    this.token = opts.token || null;
    this.stallMs = opts.stallMs ?? 30_000;
  }

  get host(): string {
    return new URL(this.endpoint).host;
  }

  fileUrl(repo: string, revision: string, path: string): string {
    if (this.source === "hf") return `${this.endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encPath(path)}`;
    return `${this.endpoint}/api/v1/models/${repo}/repo?Revision=${encodeURIComponent(revision)}&FilePath=${encodeURIComponent(path)}`;
  }

  /**
   * GET/HEAD with the token on the hub's origin only, redirects followed by hand (at most 5), and a stall timer
   * that aborts when no response arrives within stallMs. The caller's signal aborts too.
   */
  async request(url: string, init: { method?: "GET" | "HEAD"; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<{ res: Response; abort: AbortController; url: string }> {
    const origin = new URL(this.endpoint).origin;
    let current = url;
    for (let hop = 0; hop <= 5; hop++) {
      const abort = new AbortController();
      const onAbort = () => abort.abort(init.signal?.reason);
      init.signal?.addEventListener("abort", onAbort, { once: true });
      let stalled = false;
      const timer = setTimeout(() => {
        stalled = true;
        abort.abort();
      }, this.stallMs);
      const headers: Record<string, string> = { "User-Agent": "moe-studio", ...init.headers };
      if (this.token && new URL(current).origin === origin) headers.Authorization = `Bearer ${this.token}`;
      let res: Response;
      try {
        res = await fetch(current, { method: init.method ?? "GET", headers, redirect: "manual", signal: abort.signal });
      } catch (e) {
        if (stalled) throw this.stallError(current);
        if (init.signal?.aborted) throw init.signal.reason ?? e;
        throw new HubError("network", `cannot reach ${new URL(current).host}: ${causeOf(e)}`);
      } finally {
        clearTimeout(timer);
        init.signal?.removeEventListener("abort", onAbort);
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get("location")) {
        await res.body?.cancel().catch(() => undefined);
        current = new URL(res.headers.get("location")!, current).toString();
        continue;
      }
      return { res, abort, url: current };
    }
    throw new HubError("http", `too many redirects from ${url}`);
  }

  stallError(url: string): HubError {
    return new HubError("stalled", `the download stalled: ${new URL(url).host} sent nothing for ${this.stallMs % 1000 === 0 ? this.stallMs / 1000 : (this.stallMs / 1000).toFixed(1)} s. Check the connection (or try a mirror) and resume.`);
  }

  /** Turns an error status into the plain sentence the user sees. `file` is set for a file, unset for the repo. */
  async statusError(res: Response, repo: string, file?: string): Promise<HubError> {
    const code = res.headers.get("x-error-code") ?? "";
    let body = "";
    try {
      body = (await res.text()).slice(0, 300);
    } catch {
      // no body
    }
    const where = this.host;
    if (code === "RepoNotFound" || (res.status === 404 && !file)) {
      return new HubError("not_found", `${repo} was not found on ${where} (check the id, or it is private: an access token may be needed)`);
    }
    if (res.status === 404 || code === "EntryNotFound") return new HubError("not_found", `${file ?? "a file"} was not found in ${repo} on ${where}`);
    if (res.status === 401 || res.status === 403 || code === "GatedRepo") {
      return new HubError(
        "gated",
        this.token
          ? `${repo} is gated: your access token was refused (${res.status}). Accept the model's terms on its page on ${where}, or check the token.`
          : `${repo} is gated: it needs an access token. Accept the model's terms on its page on ${where}, then add your token.`,
      );
    }
    return new HubError("http", `${where} answered ${res.status} ${res.statusText || ""} for ${file ?? repo}${body ? `: ${body.replace(/\s+/g, " ").trim()}` : ""}`.trim());
  }

  private async getJson(url: string, repo: string, signal?: AbortSignal): Promise<unknown> {
    const { res } = await this.request(url, { signal, headers: { Accept: "application/json" } });
    if (!res.ok) throw await this.statusError(res, repo);
    try {
      return await res.json();
    } catch (e) {
      throw new HubError("http", `${this.host} sent a malformed answer for ${repo}: ${causeOf(e)}`);
    }
  }

  /** Every file of a repo at a revision, with sizes and checksums. */
  async listFiles(repoId: string, revision?: string, signal?: AbortSignal): Promise<RepoListing> {
    const repo = checkRepoId(repoId);
    const rev = revision || DEFAULT_REVISION[this.source];
    if (this.source === "hf") {
      const j = (await this.getJson(`${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(rev)}?blobs=true`, repo, signal)) as {
        sha?: string;
        gated?: unknown;
        siblings?: { rfilename?: string; size?: number; blobId?: string; lfs?: { sha256?: string; size?: number } }[];
      };
      if (!Array.isArray(j.siblings)) throw new HubError("http", `${this.host} sent no file list for ${repo} (siblings missing)`);
      const files: RemoteFile[] = [];
      const rev2 = typeof j.sha === "string" ? j.sha : rev;
      for (const s of j.siblings) {
        if (typeof s.rfilename !== "string") continue;
        // a mirror that answers without sizes (no ?blobs=true support): ask the file itself, HEAD
        const size = s.lfs?.size ?? s.size ?? (await this.headSize(repo, rev2, s.rfilename, signal));
        files.push({ path: s.rfilename, size, sha256: s.lfs?.sha256 ?? null, gitSha1: s.lfs ? null : (s.blobId ?? null) });
      }
      return { repo, source: "hf", revision: typeof j.sha === "string" ? j.sha : rev, gated: !!j.gated && j.gated !== "false", files };
    }
    const j = (await this.getJson(`${this.endpoint}/api/v1/models/${repo}/repo/files?Revision=${encodeURIComponent(rev)}&Recursive=true`, repo, signal)) as {
      Code?: number;
      Message?: string;
      Data?: { Files?: { Path?: string; Type?: string; Size?: number; Sha256?: string }[] };
    };
    if (j.Code !== undefined && j.Code !== 200) {
      throw new HubError(/not ?exist|not found/i.test(j.Message ?? "") || j.Code === 404 ? "not_found" : "http", `${repo} on ${this.host}: ${j.Message ?? `code ${j.Code}`}`);
    }
    const list = j.Data?.Files;
    if (!Array.isArray(list)) throw new HubError("http", `${this.host} sent no file list for ${repo} (Data.Files missing)`);
    const files = list
      .filter((f) => f.Type !== "tree" && typeof f.Path === "string" && typeof f.Size === "number")
      .map((f) => ({ path: f.Path!, size: f.Size!, sha256: f.Sha256 || null, gitSha1: null }));
    return { repo, source: "modelscope", revision: rev, gated: false, files };
  }

  /** A file's size from a HEAD request (following the hub's redirect to the CDN). */
  async headSize(repo: string, revision: string, path: string, signal?: AbortSignal): Promise<number> {
    const { res } = await this.request(this.fileUrl(repo, revision, path), { method: "HEAD", signal });
    if (!res.ok) throw await this.statusError(res, repo, path);
    const n = Number(res.headers.get("x-linked-size") ?? res.headers.get("content-length"));
    if (!Number.isSafeInteger(n) || n < 0) throw new HubError("http", `${this.host} sent no size for ${repo}/${path}`);
    return n;
  }

  /** A small JSON file of a repo (config.json for the fit estimate of a search result). */
  async fetchJsonFile(repoId: string, path: string, revision?: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const repo = checkRepoId(repoId);
    const url = this.fileUrl(repo, revision || DEFAULT_REVISION[this.source], path);
    const { res } = await this.request(url, { signal });
    if (!res.ok) throw await this.statusError(res, repo, path);
    const text = await res.text();
    try {
      const v = JSON.parse(text);
      if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HubError("http", `${repo}/${path} from ${this.host} is not a JSON object`);
  }

  /** Models whose name matches `query` (Hugging Face only: ModelScope has no search API we rely on). */
  async search(query: string, limit = 30, signal?: AbortSignal): Promise<SearchHit[]> {
    if (this.source !== "hf") throw new HubError("invalid", "search is available for the Hugging Face hub (and its mirrors); on ModelScope, enter a model id to download it");
    const url = `${this.endpoint}/api/models?search=${encodeURIComponent(query)}&limit=${limit}&config=true`;
    const j = await this.getJson(url, query, signal);
    if (!Array.isArray(j)) throw new HubError("http", `${this.host} sent a malformed search answer`);
    return j
      .filter((m): m is Record<string, unknown> => !!m && typeof m === "object" && typeof (m as { id?: unknown }).id === "string")
      .map((m) => {
        const config = (m.config ?? null) as { model_type?: unknown } | null;
        const tags = Array.isArray(m.tags) ? (m.tags as unknown[]).filter((t): t is string => typeof t === "string") : [];
        const modelType = typeof config?.model_type === "string" ? config.model_type : null;
        return {
          repo: m.id as string,
          modelType: modelType ?? tags.find((t) => KNOWN_TYPE_TAGS.has(t)) ?? null,
          downloads: typeof m.downloads === "number" ? m.downloads : 0,
          likes: typeof m.likes === "number" ? m.likes : 0,
          gated: !!m.gated && m.gated !== "false",
        };
      });
  }
}

const KNOWN_TYPE_TAGS = new Set<string>(SUPPORTED_MODEL_TYPES);

function causeOf(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(e);
}
