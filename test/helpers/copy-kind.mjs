// A real job kind for the job service's tests (plain ESM, so that a child "app" process can use it with the compiled
// service too): it copies a file in chunks into <out>.partial, and renames that to <out> when complete, so a cancel
// or a crash never leaves a file at <out> that looks whole. Pause stops at a chunk boundary and saves the offset;
// resume continues from it (from the start when the partial file is gone or shorter). A cancel removes the partial.
// The start-up sweep after a crash removes the partial the dead process left.
import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";

/**
 * @param {symbol} PAUSED the job system's PAUSED value (electron/jobs/kind.ts, as loaded by the caller)
 * @param {{ kind?: string, canPause?: boolean, chunk?: number, delayMs?: number }} [o]
 */
export function copyKind(PAUSED, o = {}) {
  const chunk = o.chunk ?? 64 * 1024;
  const delayMs = o.delayMs ?? 5;
  const canPause = o.canPause ?? true;
  return {
    kind: o.kind ?? "export",
    canPause,
    canResume: canPause,
    title: (p) => `Copy ${p.src}`,
    subject: (p) => p.out,
    validate: (p) => {
      if (!existsSync(p.src)) throw Object.assign(new Error(`${p.src}: no such file`), { code: "not_found" });
      if (existsSync(p.out)) throw Object.assign(new Error(`${p.out} already exists`), { code: "invalid_input" });
    },
    start(p, report, resume) {
      const partial = `${p.out}.partial`;
      const total = statSync(p.src).size;
      let offset = typeof resume?.offset === "number" && existsSync(partial) && statSync(partial).size >= resume.offset ? resume.offset : 0;
      /** @type {null | "cancel" | "pause"} */
      let stop = null;
      report.detail({ partial, offset });
      const done = (async () => {
        const src = openSync(p.src, "r");
        const dst = openSync(partial, offset > 0 ? "r+" : "w");
        let finished = false;
        try {
          const buf = Buffer.alloc(chunk);
          while (offset < total) {
            if (stop === "cancel") throw new Error("cancelled");
            if (stop === "pause") {
              report.detail({ offset });
              return PAUSED;
            }
            const n = readSync(src, buf, 0, Math.min(chunk, total - offset), offset);
            writeSync(dst, buf, 0, n, offset);
            offset += n;
            report.progress(offset, total, "bytes");
            await new Promise((r) => setTimeout(r, delayMs));
          }
          finished = true;
        } finally {
          closeSync(src);
          closeSync(dst);
          if (!finished && stop !== "pause") rmSync(partial, { force: true });
        }
        renameSync(partial, p.out);
        return { bytes: total };
      })();
      return {
        done,
        cancel: () => void (stop = "cancel"),
        ...(canPause ? { pause: () => void (stop ??= "pause") } : {}),
      };
    },
    interrupted(_p, d) {
      if (typeof d.partial === "string") rmSync(d.partial, { force: true });
    },
  };
}
