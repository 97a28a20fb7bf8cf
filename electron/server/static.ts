// The renderer's built files (renderer/dist) as responses: URL path -> file inside the root, content type, and
// nothing outside the root. Used by the `serve` HTTP server and by Electron's app:// protocol handler alike.
import { existsSync, promises as fs, realpathSync } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".txt": "text/plain; charset=utf-8",
  ".wasm": "application/wasm",
};

export function contentType(path: string): string {
  return TYPES[extname(path).toLowerCase()] ?? "application/octet-stream";
}

/**
 * renderer/dist of this checkout or package, whether this module runs compiled (out/electron/server) or from
 * source; MOE_STUDIO_RENDERER_DIR overrides it (tests, or a renderer built elsewhere).
 */
export function defaultStaticDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MOE_STUDIO_RENDERER_DIR) return resolve(env.MOE_STUDIO_RENDERER_DIR);
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [resolve(here, "../../../renderer/dist"), resolve(here, "../../renderer/dist")];
  return candidates.find((p) => existsSync(join(p, "index.html"))) ?? candidates[0];
}

export function hasIndex(staticDir: string): boolean {
  return existsSync(join(staticDir, "index.html"));
}

export type StaticResult =
  | { status: 200; path: string; type: string; body: Buffer }
  | { status: 400 | 403 | 404; message: string };

/**
 * Resolve a request path (the URL's pathname, still percent-encoded) to a file under `root`. "/" is index.html.
 * Refused: malformed encoding, NUL bytes, backslashes, any ".." segment (also encoded), and files that resolve
 * (through symlinks) outside the root. A path without an extension that is not a file gets index.html, so the
 * single-page app can own its routes.
 */
export async function readStatic(root: string, pathname: string): Promise<StaticResult> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return { status: 400, message: "malformed path" };
  }
  if (!decoded.startsWith("/") || decoded.includes("\0") || decoded.includes("\\")) return { status: 400, message: "malformed path" };
  const segments = decoded.split("/").filter((s) => s.length > 0);
  if (segments.some((s) => s === ".." || s === ".")) return { status: 403, message: "forbidden" };
  if (segments.some((s) => s.startsWith("."))) return { status: 404, message: "not found" }; // no dotfiles
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch {
    return { status: 404, message: "not found" };
  }
  const rel = segments.length === 0 ? "index.html" : segments.join(sep);
  let file = resolve(realRoot, rel);
  if (!inside(realRoot, file)) return { status: 403, message: "forbidden" };
  let stat = await fs.stat(file).catch(() => null);
  if (stat?.isDirectory()) {
    file = join(file, "index.html");
    stat = await fs.stat(file).catch(() => null);
  }
  if (!stat && extname(decoded) === "") {
    file = join(realRoot, "index.html");
    stat = await fs.stat(file).catch(() => null);
  }
  if (!stat || !stat.isFile()) return { status: 404, message: "not found" };
  const real = await fs.realpath(file).catch(() => null);
  if (!real || !inside(realRoot, real)) return { status: 403, message: "forbidden" };
  return { status: 200, path: real, type: contentType(real), body: await fs.readFile(real) };
}

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}
