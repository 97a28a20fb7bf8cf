// The curated catalogue (assets/catalog/models.json): models the engine runs, with a snapshot of the config numbers
// the fit estimate needs and an approximate download size, so Discover has something to show before (or without)
// a connection. Each entry's config goes through the same configShape as a live config.json.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { describeZodError } from "../rpc.js";
import { configShape, type ConfigShape } from "./params.js";

const Entry = z.strictObject({
  id: z.string().min(1),
  name: z.string().min(1),
  family: z.string().min(1),
  architecture: z.string().min(1),
  hf: z.string().regex(/^[^/\s]+\/[^/\s]+$/),
  modelscope: z.string().regex(/^[^/\s]+\/[^/\s]+$/).nullable(),
  downloadBytes: z.number().int().positive(),
  config: z.record(z.string(), z.unknown()),
});
const File = z.object({ note: z.string(), snapshotDate: z.string(), models: z.array(Entry).min(1) });

export type CatalogModel = z.infer<typeof Entry> & { shape: ConfigShape };

/** assets/catalog/models.json from the source tree or from out/ (compiled JS), or MOE_STUDIO_CATALOG. */
export function catalogPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [process.env.MOE_STUDIO_CATALOG, join(here, "../../assets/catalog/models.json"), join(here, "../../../assets/catalog/models.json")].filter(
    (p): p is string => !!p,
  );
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`the model catalogue is missing: none of ${candidates.join(", ")} exists`);
}

export function loadCatalog(path = catalogPath()): CatalogModel[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
  const parsed = File.safeParse(raw);
  if (!parsed.success) throw new Error(`${path}: ${describeZodError(parsed.error, "catalogue")}`);
  return parsed.data.models.map((m) => ({ ...m, shape: configShape(m.config, `${path}: ${m.id}.config`) }));
}
