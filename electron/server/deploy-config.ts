// `moe-studio serve --config deploy.yaml`: everything a headless deployment needs in one file, the way TeleChat and
// Qwen deploy their web demo and API together. Each field is a serve flag (flags given on the command line win):
//
//   model: /models/Qwen3-30B-A3B     # --model (relative paths are relative to this file)
//   adapter: runs/whales/final       # --adapter
//   data_dir: /var/lib/moe-studio    # --data
//   allow_dirs: [/srv/datasets]      # --allow-dir, each
//   device: auto                     # --device cpu | cuda | auto (| emu)
//   gpu: 0                           # --gpu: which GPU (CUDA_VISIBLE_DEVICES of the engine)
//   threads: 16                      # --threads: the engine's compute threads (default: one per core)
//   kv_cache: f16                    # --kv-cache f32 | f16 | int8 (default: the app's setting, f16)
//   web_host: 127.0.0.1              # --host: the browser UI; another address needs web_token
//   web_port: 8377                   # --port
//   web_token: ...                   # --token (or MOE_STUDIO_TOKEN)
//   api: true                        # --api (on as well when any api_* field is set, unless api: false)
//   api_host: 127.0.0.1              # --api-host; another address needs api_key
//   api_port: 8378                   # --api-port
//   api_key: ...                     # --api-key (or MOE_STUDIO_API_KEY)
//
// A field that is unknown, of the wrong type or out of range is an error naming the file, line and field, before
// anything starts. Secrets may stay out of the file: the environment variables fill in what it leaves out.
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair } from "yaml";
import { KV_CACHE_TYPES } from "../engine/load-options.js";

export class DeployConfigError extends Error {}

/** What the file says, as serve's flags: value flags, list flags (allow-dir), and --api. */
export interface DeployFlags {
  flags: Record<string, string | true>;
  lists: Record<string, string[]>;
}

type Kind = "path" | "string" | "port" | "gpu" | "count" | "bool" | "paths" | "choice";
const FIELDS: Record<string, { kind: Kind; flag: string; choices?: readonly string[] }> = {
  model: { kind: "path", flag: "model" },
  adapter: { kind: "path", flag: "adapter" },
  data_dir: { kind: "path", flag: "data" },
  allow_dirs: { kind: "paths", flag: "allow-dir" },
  device: { kind: "choice", flag: "device", choices: ["cpu", "cuda", "auto", "emu"] },
  gpu: { kind: "gpu", flag: "gpu" },
  threads: { kind: "count", flag: "threads" },
  kv_cache: { kind: "choice", flag: "kv-cache", choices: KV_CACHE_TYPES },
  web_host: { kind: "string", flag: "host" },
  web_port: { kind: "port", flag: "port" },
  web_token: { kind: "string", flag: "token" },
  api: { kind: "bool", flag: "api" },
  api_host: { kind: "string", flag: "api-host" },
  api_port: { kind: "port", flag: "api-port" },
  api_key: { kind: "string", flag: "api-key" },
};

/** The closest field name, for "did you mean" (edit distance at most 2). */
function closest(name: string): string | null {
  const dist = (a: string, b: string) => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0][j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    return d[a.length][b.length];
  };
  let best: string | null = null;
  let bestD = 3;
  for (const f of Object.keys(FIELDS)) {
    const x = dist(name, f);
    if (x < bestD) [best, bestD] = [f, x];
  }
  return best;
}

export function readDeployConfig(file: string): DeployFlags {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new DeployConfigError(`${file}: cannot read the deploy config (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseDeployConfig(text, file);
}

/** Parses the text of `file` (named in errors; relative paths resolve against its folder). */
export function parseDeployConfig(text: string, file: string): DeployFlags {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const at = (node: Node | Pair | null | undefined) => {
    const offset = node && "range" in node && node.range ? node.range[0] : undefined;
    if (offset === undefined) return file;
    const p = lines.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  if (doc.errors.length) {
    const e = doc.errors[0];
    const p = e.linePos?.[0];
    throw new DeployConfigError(`${p ? `${file}:${p.line}:${p.col}` : file}: not valid YAML (${e.message.split("\n")[0].replace(/ at line \d+, column \d+:$/, "")})`);
  }
  const out: DeployFlags = { flags: {}, lists: {} };
  if (doc.contents === null) return out; // an empty file: every flag from the command line
  if (!isMap(doc.contents)) throw new DeployConfigError(`${at(doc.contents)}: the deploy config is a mapping of fields (model: ..., api_port: ...)`);
  const base = dirname(resolve(file));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  let apiFieldSeen = false;
  let apiSwitch: boolean | null = null;

  for (const pair of doc.contents.items) {
    const keyNode = pair.key as Node | null;
    const name = isScalar(keyNode) ? String(keyNode.value) : null;
    if (name === null) throw new DeployConfigError(`${at(keyNode)}: a field name must be a plain word`);
    const field = FIELDS[name];
    if (!field) {
      const near = closest(name);
      throw new DeployConfigError(`${at(keyNode)}: ${name}: unknown field${near ? ` (did you mean ${near}?)` : ""}; the fields are ${Object.keys(FIELDS).join(", ")}`);
    }
    const node = pair.value as Node | null;
    const where = `${at(node ?? keyNode)}: ${name}`;
    if (node === null || (isScalar(node) && node.value === null)) continue; // `field:` with no value: not set
    const scalar = isScalar(node) ? node.value : undefined;
    const got = () => (isScalar(node) ? JSON.stringify(scalar) : isSeq(node) ? "a list" : "a mapping");
    switch (field.kind) {
      case "path":
      case "string": {
        if (typeof scalar !== "string" || scalar === "") throw new DeployConfigError(`${where}: must be a ${field.kind === "path" ? "path" : "string"}, got ${got()}`);
        out.flags[field.flag] = field.kind === "path" ? path(scalar) : scalar;
        break;
      }
      case "port":
      case "gpu":
      case "count": {
        const [min, max] = field.kind === "port" ? [0, 65535] : field.kind === "gpu" ? [0, 63] : [1, 1024];
        if (typeof scalar !== "number" || !Number.isInteger(scalar) || scalar < min || scalar > max) {
          throw new DeployConfigError(`${where}: must be an integer in [${min}, ${max}]${field.kind === "port" ? " (0: any free port)" : ""}, got ${got()}`);
        }
        out.flags[field.flag] = String(scalar);
        break;
      }
      case "choice": {
        const choices = field.choices!;
        if (typeof scalar !== "string" || !choices.includes(scalar)) throw new DeployConfigError(`${where}: must be one of ${choices.join(", ")}, got ${got()}`);
        out.flags[field.flag] = scalar;
        break;
      }
      case "bool": {
        if (typeof scalar !== "boolean") throw new DeployConfigError(`${where}: must be true or false, got ${got()}`);
        apiSwitch = scalar;
        break;
      }
      case "paths": {
        if (!isSeq(node)) throw new DeployConfigError(`${where}: must be a list of paths, got ${got()}`);
        out.lists[field.flag] = node.items.map((item, i) => {
          const v = isScalar(item) ? item.value : undefined;
          if (typeof v !== "string" || v === "") throw new DeployConfigError(`${at(item as Node)}: ${name}[${i}]: must be a path`);
          return path(v);
        });
        break;
      }
    }
    if (name.startsWith("api_")) apiFieldSeen = true;
  }
  if (apiSwitch === true || (apiSwitch === null && apiFieldSeen)) out.flags.api = true;
  else if (apiSwitch === false) for (const f of ["api-host", "api-port", "api-key"]) delete out.flags[f];
  return out;
}
