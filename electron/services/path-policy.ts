// Which filesystem paths a client may make the app read or write. Every path that arrives in a call (a model folder
// to open or quantize, a dataset file to scan or export to, a tokenizer folder, the models folder setting) passes
// through one PathPolicy in services/app.ts before a service sees it.
//
// - Electron and the CLI use `anyPath`: the window is the app's own page and its paths come from system dialogs
//   (or the user's own command line).
// - `moe-studio serve` uses ContainedPaths: a browser tab (or any local process holding the token) may only name
//   paths under the folders the person who started the server chose: the data folder, `--model DIR`, each
//   `--allow-dir DIR`, and the models folder setting (itself only settable to a contained folder).
//
// Containment is decided on the real path: symlinks are resolved (realpath of the longest existing prefix; what
// does not exist yet cannot be a link), so a link inside an allowed folder that points outside is refused. A ".."
// segment is refused outright rather than normalised: the kernel resolves ".." after following a symlink, a string
// normaliser before it, and the two can disagree. Services are handed the canonical path that was checked.
import { lstatSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { RpcError } from "../contract.js";

export type PathAccess = "read" | "write";

export interface PathPolicy {
  /**
   * The path to read (a file, or a folder and what is in it), or throws invalid_input naming `what`, the path and
   * the folders that are allowed. `what` says what the path is for, e.g. "model folder".
   */
  checkRead(path: string, what: string): string;
  /** The same for a path the app will create or overwrite (a file, or a folder it writes into). */
  checkWrite(path: string, what: string): string;
}

/** Electron and the CLI: every path as given (the services resolve it). */
export const anyPath: PathPolicy = {
  checkRead: (path) => path,
  checkWrite: (path) => path,
};

export interface AllowedDir {
  dir: string;
  /** Whether the app may also create and overwrite files under it (else: read only). */
  write: boolean;
}

export interface ContainedPathsOptions {
  /** Folders fixed at start (the data folder, --model, --allow-dir). */
  dirs: AllowedDir[];
  /** Folders that can change while the app runs (the models folder setting); asked at each check. */
  currentDirs?: () => AllowedDir[];
  /** Files and folders inside allowed folders that are never written (the app's own database). */
  noWrite?: string[];
  /** Appended to a refusal: how the user can allow another folder. */
  hint?: string;
}

export class ContainedPaths implements PathPolicy {
  constructor(private readonly opts: ContainedPathsOptions) {}

  checkRead(path: string, what: string): string {
    return this.check(path, what, "read");
  }

  checkWrite(path: string, what: string): string {
    return this.check(path, what, "write");
  }

  /** The allowed folders for `access`, as real paths (a folder that does not exist yet: as it would be). */
  allowed(access: PathAccess): string[] {
    const all = [...this.opts.dirs, ...(this.opts.currentDirs?.() ?? [])];
    const out: string[] = [];
    for (const d of all) {
      if (access === "write" && !d.write) continue;
      let real: string;
      try {
        real = canonical(resolve(d.dir));
      } catch {
        continue; // an allowed folder that is a link to nothing allows nothing
      }
      if (!out.includes(real)) out.push(real);
    }
    // a folder inside another allowed one adds nothing (and would only lengthen the refusal's list)
    return out.filter((d) => !out.some((o) => o !== d && inside(o, d)));
  }

  private check(path: string, what: string, access: PathAccess): string {
    const refuse = (why: string) => new RpcError("invalid_input", `${what}: ${JSON.stringify(path)} ${why}`);
    if (path.includes("\0")) throw refuse("contains a NUL character");
    if (!isAbsolute(path)) throw refuse("is not an absolute path");
    if (path.split(/[\\/]/).includes("..")) throw refuse('contains ".." (name the folder itself)');
    let real: string;
    try {
      real = canonical(resolve(path));
    } catch (e) {
      if (e instanceof DanglingLink) throw refuse(`goes through ${e.link}, a symbolic link to a missing target`);
      throw e;
    }
    const allowed = this.allowed(access);
    if (access === "write") {
      const own = (this.opts.noWrite ?? []).find((p) => inside(canonicalOrSelf(resolve(p)), real));
      if (own) throw refuse(`is one of the app's own files (${own}): choose another name`);
    }
    if (allowed.some((root) => inside(root, real))) return real;
    const shown = real === resolve(path) ? "" : ` (it leads to ${real})`;
    const list = allowed.length ? allowed.join(", ") : "none";
    throw refuse(`is outside the folders this server may ${access === "read" ? "read" : "write to"}${shown}: ${list}${this.opts.hint ? `. ${this.opts.hint}` : ""}`);
  }
}

/**
 * The real path of `abs` (absolute, no ".." segments): realpath of the longest prefix that exists, then the rest as
 * written (what does not exist cannot be a link). Throws DanglingLink where a prefix is a link to nothing: where
 * it would lead is a guess, so it is refused rather than guessed.
 */
function canonical(abs: string): string {
  const rest: string[] = [];
  let p = abs;
  for (;;) {
    try {
      return join(realpathSync.native(p), ...rest);
    } catch {
      // p does not exist, or it is (or goes through) a link to nothing
    }
    let isLink = false;
    try {
      isLink = lstatSync(p).isSymbolicLink();
    } catch {
      // p is missing
    }
    if (isLink) throw new DanglingLink(p);
    const parent = dirname(p);
    if (parent === p) return join(p, ...rest);
    rest.unshift(basename(p));
    p = parent;
  }
}

function canonicalOrSelf(abs: string): string {
  try {
    return canonical(abs);
  } catch {
    return abs;
  }
}

class DanglingLink extends Error {
  constructor(readonly link: string) {
    super(`${link} is a symbolic link to a missing target`);
  }
}

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}
