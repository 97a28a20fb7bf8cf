// What a killed process leaves behind, swept at the next start (the app, `moe-studio serve`, and the CLI commands that
// write into a folder: pull, quantize, export-gguf). Every writer names its temporary output after itself, and this
// module knows those names only through the writers' own exports:
//   .NAME.partial-<pid>/      a quantize's output folder            (engine/quantize.ts: quantizeTempName)
//   FILE.tmp-<pid>-<ms>       a GGUF export                          (gguf/format.ts: ggufTempPath)
//   PATH.tmp-<pid>            a small file written whole: the download sidecar, the hub token, a GGUF file's origin
//                             sidecar FILE.gguf.moe-studio.json (library/atomic-write.ts, library/local.ts); only for
//                             those names: another program's "x.tmp-123" beside them is not ours
//   <id>.partial/             a download's staging folder WITHOUT its <id>.download.json sidecar (library/downloader.ts)
// A staging folder with its sidecar, and the <file>.partial files inside it, are a resumable download: never swept.
//
// When is a pid-named leftover safe to remove? Its writer must be gone, and pids are reused, so "a process with that
// pid exists" does not mean the writer is alive, and "none exists" does not prove it is dead everywhere:
//   - pid not alive (process.kill(pid, 0) -> ESRCH): removed, but only once nothing in it changed for MIN_AGE_MS.
//     The age guard is for writers this process cannot see: another pid namespace (a container, a sandbox) or
//     another machine sharing the folder (a models folder on a NAS). A writer that is alive touches its output all
//     the time (a quantize or export streams to it), so minutes of silence mean it is gone.
//   - pid alive (or EPERM: it exists under another user): kept, unless the leftover is provably older than that
//     process: on Linux the process's start time comes from /proc/<pid>/stat, and a file last modified before the
//     process began cannot be that process's work, so the pid was reused and the file is removed. Where the start
//     time is unknown (macOS, Windows) a live pid keeps its file: a leak at worst, never the loss of running work.
//   - an orphaned staging folder (no pid in its name): removed once nothing in it changed for MIN_AGE_MS (a download
//     writes its sidecar before it creates the folder, so a folder without one is a cancel that was cut short).
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { QUANTIZE_TEMP_RE } from "../engine/quantize.js";
import { GGUF_TEMP_RE } from "../gguf/format.js";
import { ATOMIC_TEMP_RE } from "../library/atomic-write.js";
import { SIDECAR_SUFFIX, STAGING_SUFFIX } from "../library/downloader.js";
import { ORIGIN_SUFFIX } from "../library/local.js";
import { API_KEY_FILE, ENDPOINT_KEYS_FILE, TOKEN_FILE } from "../library/token-store.js";

/** <owner>--<name>.partial, as downloader.ts's stagingPath makes it: a user's own "x.partial" folder is not one. */
const STAGING_RE = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]*--[A-Za-z0-9][A-Za-z0-9._-]*${STAGING_SUFFIX.replace(".", "\\.")}$`);

/** Nothing modified for this long before a dead writer's leftover (or an orphaned staging folder) is removed. */
export const MIN_AGE_MS = 2 * 60_000;
/** The /proc start time is in clock ticks; 2 s covers its resolution and the file system's timestamp rounding. */
export const START_SLACK_MS = 2_000;

/**
 * Whether the process that had `pid` at time `seenAt` (ms) has ended: no process has that pid now, or the one that
 * has it began after `seenAt` (Linux: the pid was reused). Where the start time is unknown a live pid counts as running.
 */
export function pidGoneSince(pid: number, seenAt: number): boolean {
  if (!pidAlive(pid)) return true;
  const started = processStartMs(pid);
  return started !== null && started > seenAt + START_SLACK_MS;
}

export type LeftoverKind = "quantize-temp" | "gguf-temp" | "atomic-temp" | "download-staging";

export interface Leftover {
  path: string;
  kind: LeftoverKind;
  /** The writer's pid from the name; null for a staging folder. */
  pid: number | null;
  /** The final path it was to become (the quantized folder, the .gguf, the sidecar; the model folder for staging). */
  target: string;
}

export interface SweepResult {
  removed: Leftover[];
  /** Candidates left in place, with the reason (a live writer, too recent, a resumable download). */
  kept: (Leftover & { why: string })[];
}

export interface SweepOptions {
  /** Default Date.now(). */
  now?: number;
  /** Default MIN_AGE_MS. */
  minAgeMs?: number;
  /** Only the leftovers this accepts are considered (e.g. those of one known, dead process). */
  match?: (l: Leftover) => boolean;
}

/** The leftovers a folder holds (its top level only: every writer puts its temporary output beside the final one). */
export function findLeftovers(dir: string): Leftover[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: Leftover[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let m: RegExpExecArray | null;
    if ((m = QUANTIZE_TEMP_RE.exec(name))) out.push({ path, kind: "quantize-temp", pid: Number(m[2]), target: join(dir, m[1]) });
    else if ((m = GGUF_TEMP_RE.exec(name))) out.push({ path, kind: "gguf-temp", pid: Number(m[2]), target: join(dir, m[1]) });
    else if ((m = ATOMIC_TEMP_RE.exec(name)) && (m[1].endsWith(SIDECAR_SUFFIX) || m[1] === TOKEN_FILE || m[1] === API_KEY_FILE || m[1] === ENDPOINT_KEYS_FILE || m[1].endsWith(ORIGIN_SUFFIX))) out.push({ path, kind: "atomic-temp", pid: Number(m[2]), target: join(dir, m[1]) });
    else if (STAGING_RE.test(name)) out.push({ path, kind: "download-staging", pid: null, target: join(dir, name.slice(0, -STAGING_SUFFIX.length)) });
  }
  return out;
}

/**
 * Whether a process with this pid is running (EPERM: it exists, under another user). A zombie — dead, waiting for a
 * parent to reap it, which can take a while when its parent died too and the init process reaps lazily — answers
 * kill(pid, 0) like a live one; on Linux its /proc state (Z, or X while it goes) says it is gone.
 */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  return !(process.platform === "linux" && /^[ZX]$/.test(procStat(pid)?.[0] ?? ""));
}

/** The fields of /proc/<pid>/stat after the command name (field 3, the state, first), or null. */
function procStat(pid: number): string[] | null {
  try {
    // the command name (field 2) is in parentheses and may hold spaces or ")": fields are counted after the last ")"
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

let bootTimeMs: number | null | undefined;

/** When a process began (ms since the epoch), on Linux; null elsewhere or when it cannot be read. */
export function processStartMs(pid: number): number | null {
  if (process.platform !== "linux") return null;
  try {
    if (bootTimeMs === undefined) {
      const btime = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
      bootTimeMs = btime ? Number(btime[1]) * 1000 : null;
    }
    if (bootTimeMs === null) return null;
    const fields = procStat(pid);
    if (!fields) return null;
    // field 22, starttime, in clock ticks since boot; the kernel exports it in USER_HZ, 100 on every Linux we ship for
    const ticks = Number(fields[22 - 3]);
    return Number.isFinite(ticks) ? bootTimeMs + ticks * 10 : null;
  } catch {
    return null;
  }
}

/** The newest modification time in a file or folder tree (a folder's own mtime misses writes into its files). */
function lastModifiedMs(path: string): number {
  const s = lstatSync(path);
  let newest = s.mtimeMs;
  if (s.isDirectory()) {
    for (const name of readdirSync(path)) newest = Math.max(newest, lastModifiedMs(join(path, name)));
  }
  return newest;
}

/** Why a leftover must stay, or null when it can go. */
function keepReason(l: Leftover, now: number, minAgeMs: number): string | null {
  const modified = lastModifiedMs(l.path);
  const quiet = now - modified >= minAgeMs;
  if (l.kind === "download-staging") {
    const sidecar = `${l.path.slice(0, -STAGING_SUFFIX.length)}${SIDECAR_SUFFIX}`;
    if (existsSync(sidecar)) return "a resumable download (its sidecar is there)";
    return quiet ? null : "no sidecar, but modified recently";
  }
  const pid = l.pid!;
  if (pidAlive(pid)) {
    const started = processStartMs(pid);
    if (started !== null && modified < started - START_SLACK_MS) return null; // older than the process: pid reused
    return `its writer (pid ${pid}) is running`;
  }
  return quiet ? null : `its writer (pid ${pid}) is gone, but it was modified less than ${Math.round(minAgeMs / 1000)} s ago`;
}

/**
 * Removes the leftovers of dead writers in each folder (a folder that does not exist is skipped). Never throws: a
 * leftover that cannot be inspected or removed is reported as kept.
 */
export function sweepLeftovers(dirs: string[], opts: SweepOptions = {}): SweepResult {
  const now = opts.now ?? Date.now();
  const minAgeMs = opts.minAgeMs ?? MIN_AGE_MS;
  const result: SweepResult = { removed: [], kept: [] };
  for (const dir of new Set(dirs)) {
    for (const l of findLeftovers(dir)) {
      if (opts.match && !opts.match(l)) continue;
      try {
        const why = keepReason(l, now, minAgeMs);
        if (why) {
          result.kept.push({ ...l, why });
          continue;
        }
        rmSync(l.path, { recursive: true, force: true });
        result.removed.push(l);
      } catch (e) {
        result.kept.push({ ...l, why: `cannot be removed: ${(e as Error).message}` });
      }
    }
  }
  return result;
}
