// What the models folder holds, for the Models view's "In your models folder" list (library.local): every model the
// app downloaded, quantized or exported lands there, and so may folders a user copied in by hand.
//   <name>/ with config.json           kind "model"    (our engine opens it)
//   <name>/ with adapter_config.json   kind "adapter"  (a PEFT adapter: chat with it on its base model)
//   <name>.gguf                        kind "gguf"     (for llama.cpp & co.; our engine loads safetensors)
// Everything else is left out: hidden entries (the quantizer's and exporters' `.NAME.partial-PID/`), a download's
// `<id>.partial/` staging folder and `<id>.download.json` sidecar, `*.tmp*` leftovers, folders with neither config.
//
// Where an entry came from is not something the weights say, so the app writes it down when it makes one: a sidecar
// `moe-studio.json` inside a folder, or `<file>.moe-studio.json` beside a .gguf (a GGUF file has no folder to hold it,
// and writing into the GGUF's own metadata would mean rewriting gigabytes). The sidecar is read leniently: an
// unreadable or invalid one (a newer version's, a hand edit) means origin null, never an error for the whole list.
// Model loaders ignore the extra file: the engine reads config.json, tokenizer files and *.safetensors by name.
import { readdirSync, readFileSync, statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { LocalOrigin, type LocalModel } from "../contract.js";
import { writeFileAtomic } from "./atomic-write.js";

/** The origin sidecar inside a model or adapter folder. */
export const ORIGIN_FILE = "moe-studio.json";
/** The origin sidecar beside a file: `<file>.moe-studio.json`. */
export const ORIGIN_SUFFIX = ".moe-studio.json";
/** A sidecar is a few hundred bytes; anything far larger is not ours and is not read into memory. */
const MAX_SIDECAR_BYTES = 64 * 1024;
/** config.json and adapter_config.json are small too; a huge one is not parsed just to show a name. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
/** How deep a folder's size is summed (HF folders are flat; adapters and some repos nest a level or two). */
const MAX_DEPTH = 4;

/** Where the origin of `target` (a folder, or a file such as a .gguf) is kept. */
export function originPath(target: string, isDir: boolean): string {
  return isDir ? join(target, ORIGIN_FILE) : `${target}${ORIGIN_SUFFIX}`;
}

/**
 * Records where `target` came from (temp file + rename: a crash leaves the old sidecar or the new one). `target` must
 * exist; a folder gets the sidecar inside it, a file beside it. Validated first, so a writer's mistake is an error
 * here and never an unreadable file later.
 */
export function writeOrigin(target: string, origin: LocalOrigin): void {
  const parsed = LocalOrigin.parse(origin);
  writeFileAtomic(originPath(target, statSync(target).isDirectory()), JSON.stringify(parsed, null, 2) + "\n");
}

/**
 * writeOrigin for an output that is already in place and whole: a failure to write the sidecar (a full disk) must not
 * fail the job that made it, since its output stays either way (and a retry would refuse the taken name). Returns why
 * it was not recorded, or null.
 */
export function recordOrigin(target: string, origin: LocalOrigin): string | null {
  try {
    writeOrigin(target, origin);
    return null;
  } catch (e) {
    return `its origin was not recorded (${(e as Error).message}); the output is complete`;
  }
}

/** The origin recorded for `target`, or null (none, unreadable, not JSON, not the schema). Never throws. */
export function readOrigin(target: string, isDir: boolean): LocalOrigin | null {
  try {
    const file = originPath(target, isDir);
    if (statSync(file).size > MAX_SIDECAR_BYTES) return null;
    const r = LocalOrigin.safeParse(JSON.parse(readFileSync(file, "utf8")));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/** A JSON object from a small file, or null. */
function readJson(file: string): Record<string, unknown> | null {
  try {
    if (statSync(file).size > MAX_CONFIG_BYTES) return null;
    const v: unknown = JSON.parse(readFileSync(file, "utf8"));
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/** Bytes of the files under `dir` and the newest mtime among them and the folder; symlinked folders are not entered. */
function folderSize(dir: string, depth = 0): { bytes: number; mtime: number } {
  let bytes = 0;
  let mtime = statOrNull(dir)?.mtimeMs ?? 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return { bytes, mtime };
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (depth + 1 >= MAX_DEPTH) continue;
      const sub = folderSize(p, depth + 1);
      bytes += sub.bytes;
      mtime = Math.max(mtime, sub.mtime);
    } else {
      // a symlinked file counts with its target's size (what loading it reads); a dangling link counts nothing
      const s = statOrNull(p);
      if (!s?.isFile()) continue;
      bytes += s.size;
      mtime = Math.max(mtime, s.mtimeMs);
    }
  }
  return { bytes, mtime };
}

/**
 * Names that are some writer's work in progress or bookkeeping, never a model: hidden names (every temporary output
 * of ours starts with "."), a download's staging folder and sidecar, and temporary files (PATH.tmp-PID,
 * FILE.tmp-PID-MS, or a plain .tmp).
 */
export function isLeftoverName(name: string): boolean {
  return name.startsWith(".") || name.endsWith(".partial") || name.endsWith(".download.json") || /\.tmp(?:-\d+(?:-\d+)?)?$/.test(name) || name.endsWith(ORIGIN_SUFFIX);
}

/** The entries of the models folder, newest first; [] when the folder does not exist (nothing downloaded yet). */
export function listLocal(modelsDir: string): LocalModel[] {
  let names: string[];
  try {
    names = readdirSync(modelsDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`${modelsDir}: cannot list the models folder (${(e as Error).message})`);
  }
  const out: LocalModel[] = [];
  for (const name of names) {
    if (isLeftoverName(name)) continue;
    const path = join(modelsDir, name);
    // stat follows a symlink: a linked-in model folder counts like one that was copied
    const s = statOrNull(path);
    if (!s) continue; // removed while we looked, or a dangling link
    if (s.isDirectory()) {
      const config = statOrNull(join(path, "config.json"))?.isFile() ? readJson(join(path, "config.json")) : undefined;
      const adapter = config === undefined && statOrNull(join(path, "adapter_config.json"))?.isFile() ? readJson(join(path, "adapter_config.json")) : undefined;
      if (config === undefined && adapter === undefined) continue; // not a model folder (a user's own folder, say)
      const { bytes, mtime } = folderSize(path);
      const arch = config !== undefined ? config?.model_type : adapter?.base_model_name_or_path;
      out.push({
        name,
        path,
        kind: config !== undefined ? "model" : "adapter",
        sizeBytes: bytes,
        architecture: typeof arch === "string" && arch ? arch : null,
        modifiedAt: Math.round(mtime),
        origin: readOrigin(path, true),
      });
    } else if (s.isFile() && name.toLowerCase().endsWith(".gguf")) {
      out.push({ name, path, kind: "gguf", sizeBytes: s.size, architecture: null, modifiedAt: Math.round(s.mtimeMs), origin: readOrigin(path, false) });
    }
  }
  return out.sort((a, b) => b.modifiedAt - a.modifiedAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
