// A small file written whole or not at all: the bytes go to PATH.tmp-<pid> next to it and are renamed over PATH, so a
// crash leaves either the old file or the new one, never half of one. The temporary name carries the writer's pid so
// that the leftovers sweep (electron/services/leftovers.ts) can tell a file whose writer died from one being written.
import { renameSync, rmSync, writeFileSync, type WriteFileOptions } from "node:fs";

/** PATH.tmp-<pid>: the temporary name writeFileAtomic uses. */
export function atomicTempPath(path: string, pid: number = process.pid): string {
  return `${path}.tmp-${pid}`;
}

/** Matches a base name made by atomicTempPath: [1] the final name, [2] the writer's pid. */
export const ATOMIC_TEMP_RE = /^(.+)\.tmp-(\d+)$/;

export function writeFileAtomic(path: string, data: string | Uint8Array, options?: WriteFileOptions): void {
  const tmp = atomicTempPath(path);
  try {
    writeFileSync(tmp, data, options);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
