// Which files of a hub repo a model needs: the engine reads config.json and the safetensors weights (+ the shard
// index), the app's text side the tokenizer and chat template, and sampling defaults come from generation_config.
// Everything else (README, *.bin / *.gguf / *.pt copies of the weights, subfolders such as original/ or onnx/, images)
// is left on the hub: a repo often carries several copies of the weights and we want one.
import { isAbsolute, relative, resolve, sep } from "node:path";
import { HubError, type RemoteFile } from "./hub.js";

/** The longest file name (path inside the repo) we accept from a hub listing, in characters. */
export const MAX_HUB_PATH = 1024;
/** Names Windows reserves for devices: "NUL.json" opens the null device there, whatever the extension. */
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\.|$)/i;

/**
 * Why a file name from a hub listing is unsafe to write under a staging folder, or null when it is fine. The rule
 * is the same on every platform, decided on the string alone (never by the current OS's path module): a listing that
 * is harmless on Linux may be read by the app on Windows, where a backslash is a separator and `C:x` a drive.
 * Refused: an empty or over-long name, a backslash, NUL or any other control character, zero-width or bidi
 * characters, `:` (a drive letter `C:`, or an NTFS stream
 * `a:b`), an absolute path, empty / `.` / `..` segments, a segment ending in a dot or a space (Windows drops them, so
 * two names would collide), and Windows device names.
 */
export function unsafeHubPathReason(path: string): string | null {
  if (path.length === 0) return "the name is empty";
  if (path.length > MAX_HUB_PATH) return `the name is longer than ${MAX_HUB_PATH} characters`;
  // eslint-disable-next-line no-control-regex
  const ctl = /[\u0000-\u001f\u007f-\u009f]/.exec(path);
  if (ctl) return `it contains the control character U+${ctl[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  // zero-width and direction-changing characters make a name look like another one in a list or an error message
  const invisible = /[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/.exec(path);
  if (invisible) return `it contains the invisible or direction-changing character U+${invisible[0].charCodeAt(0).toString(16).toUpperCase()}`;
  if (path.includes("\\")) return "it contains a backslash (a path separator on Windows)";
  if (/^[A-Za-z]:/.test(path)) return "it starts with a drive letter";
  if (path.includes(":")) return "it contains a colon (a drive or an NTFS stream on Windows)";
  if (path.startsWith("/")) return "it is an absolute path";
  for (const seg of path.split("/")) {
    if (seg === "") return "it has an empty path segment";
    if (seg === "." || seg === "..") return `it has a "${seg}" path segment`;
    if (/[. ]$/.test(seg)) return `the segment "${seg}" ends in a dot or a space`;
    if (WINDOWS_DEVICE.test(seg)) return `"${seg}" is a device name on Windows`;
  }
  return null;
}

/** A name quoted for a message: JSON escapes plus \uXXXX for the invisible characters JSON leaves as they are. */
export function quoteHubPath(path: string): string {
  return JSON.stringify(path).replace(/[\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The file name itself, or a HubError naming the repo and the file. One rule for listings, sidecars and the downloader. */
export function checkHubPath(repo: string, path: string): string {
  const why = unsafeHubPathReason(path);
  if (why) throw new HubError("invalid", `${repo} lists an unsafe file name ${quoteHubPath(path)}: ${why}; nothing was downloaded`);
  return path;
}

/**
 * Where a repo file goes under `stagingDir`: the name must pass checkHubPath, and (belt and braces, with this OS's
 * path rules) the resolved path must stay inside the staging folder.
 */
export function stagedFilePath(stagingDir: string, repo: string, path: string): string {
  checkHubPath(repo, path);
  const root = resolve(stagingDir);
  const target = resolve(root, ...path.split("/"));
  const rel = relative(root, target);
  if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
    throw new HubError("invalid", `${repo} lists the file ${quoteHubPath(path)}, which resolves outside the download folder ${root}; nothing was downloaded`);
  }
  return target;
}

const ALWAYS = new Set([
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  // the older spelling of a separate chat template (model-folder.ts reads it too)
  "chat_template.json",
]);
/** A tokenizer in pieces, needed only when the repo has no tokenizer.json. */
const TOKENIZER_PIECES = new Set(["vocab.json", "merges.txt", "tokenizer.model", "vocab.txt"]);

export function isWeightFile(path: string): boolean {
  return !path.includes("/") && (path.endsWith(".safetensors") || path.endsWith(".safetensors.index.json"));
}

/**
 * Which safetensors files are the transformers checkpoint: with model.safetensors.index.json, its shards
 * (model-00001-of-00004.safetensors, ...); else model.safetensors; else every top-level *.safetensors. A repo may
 * also carry the same weights in another layout, e.g. Mistral's consolidated.safetensors for mistral-inference
 * (as large as the model itself): those are never taken.
 */
function weightFiles(top: RemoteFile[]): RemoteFile[] {
  const st = top.filter((f) => isWeightFile(f.path) && !f.path.startsWith("consolidated"));
  if (st.some((f) => f.path === "model.safetensors.index.json")) {
    return st.filter((f) => f.path === "model.safetensors.index.json" || /^model-\d+-of-\d+\.safetensors$/.test(f.path));
  }
  if (st.some((f) => f.path === "model.safetensors")) return st.filter((f) => f.path === "model.safetensors");
  return st;
}

/** The files to download, in a stable order (small files first, then the weights by name). */
export function selectFiles(files: RemoteFile[], repo: string): RemoteFile[] {
  // every listed name, not only the chosen ones: a hub that lists a hostile name is not trusted with the rest
  for (const f of files) checkHubPath(repo, f.path);
  const top = files.filter((f) => !f.path.includes("/"));
  const hasTokenizerJson = top.some((f) => f.path === "tokenizer.json");
  const weights = new Set(weightFiles(top));
  const chosen = top.filter((f) => ALWAYS.has(f.path) || weights.has(f) || (!hasTokenizerJson && TOKENIZER_PIECES.has(f.path)));
  if (!chosen.some((f) => f.path === "config.json")) throw new HubError("invalid", `${repo} has no config.json: it is not a Hugging Face transformers model`);
  if (!chosen.some((f) => f.path.endsWith(".safetensors"))) {
    const other = top.filter((f) => /\.(bin|gguf|pt|pth)$/.test(f.path)).map((f) => f.path);
    throw new HubError(
      "invalid",
      `${repo} has no *.safetensors weights${other.length ? ` (only ${other.slice(0, 3).join(", ")}${other.length > 3 ? ", …" : ""})` : ""}: MoE Studio loads safetensors`,
    );
  }
  const weight = (f: RemoteFile) => (f.path.endsWith(".safetensors") ? 1 : 0);
  return chosen.sort((a, b) => weight(a) - weight(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
