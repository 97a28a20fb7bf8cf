// System-prompt presets: builtins from assets/presets/*.json (each file a list of { id, name, content, language },
// seeded and refreshed at every start, never deletable) and the user's own (add, edit, delete).
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import type { Preset } from "../contract.js";
import type { HandlerInput } from "../rpc.js";
import type { Repositories } from "../store/repositories.js";
import { RpcError } from "../contract.js";
import { notFound } from "./errors.js";

const PresetFile = z.array(
  z.strictObject({ id: z.string().min(1).max(64), name: z.string().min(1), content: z.string(), language: z.enum(["en", "zh"]) }),
);

/** assets/presets whether this module runs from source (electron/services) or compiled (out/electron/services). */
export function defaultPresetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "../../assets/presets"), join(here, "../../../assets/presets")];
  return candidates.find((p) => existsSync(p)) ?? candidates[0];
}

export function readBuiltinPresets(dir: string): Preset[] {
  if (!existsSync(dir)) return [];
  const out: Preset[] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    const path = join(dir, f);
    const parsed = PresetFile.safeParse(JSON.parse(readFileSync(path, "utf8")));
    if (!parsed.success) throw new Error(`${path}: not a preset list (${parsed.error.issues[0]?.message})`);
    for (const p of parsed.data) out.push({ ...p, builtin: true });
  }
  return out;
}

export class PresetService {
  constructor(
    private readonly repos: Repositories,
    presetsDir = defaultPresetsDir(),
  ) {
    const builtins = readBuiltinPresets(presetsDir);
    this.repos.db.transaction(() => builtins.forEach((p, i) => this.repos.presets.upsert(p, i)))();
  }

  list(): Preset[] {
    return this.repos.presets.list();
  }

  save(input: HandlerInput<"presets.save">): Preset {
    if (input.id) {
      const old = this.repos.presets.get(input.id);
      if (!old) throw notFound(`Preset ${input.id} does not exist.`);
      if (old.builtin) throw new RpcError("invalid_input", `"${old.name}" is a built-in preset and cannot be changed; save it under a new name instead.`);
    }
    const p: Preset = { id: input.id ?? `user-${randomUUID()}`, name: input.name.trim() || input.name, content: input.content, language: input.language, builtin: false };
    this.repos.presets.upsert(p, 1_000_000);
    return p;
  }

  delete(input: { id: string }): { ok: true } {
    const p = this.repos.presets.get(input.id);
    if (!p) throw notFound(`Preset ${input.id} does not exist.`);
    if (p.builtin) throw new RpcError("invalid_input", `"${p.name}" is a built-in preset and cannot be deleted.`);
    this.repos.presets.delete(input.id);
    return { ok: true };
  }
}
