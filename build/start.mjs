#!/usr/bin/env node
// `npm start` (after `npm run build`): runs the app in Electron from this checkout.
//
// better-sqlite3 is not Node-API-stable: node_modules holds the build for Node (tests, CLI, `serve`), and Electron
// needs one built against its own headers. Rebuilding node_modules in place would break `npm test`, so a copy of
// the package is rebuilt for Electron once under out/electron-native/ (again when Electron or better-sqlite3
// change), and the app is pointed at it with MOE_SQLITE_BINDING. The packaged app does not need this:
// electron-builder rebuilds its own copy (npmRebuild in build/electron-builder.yml).
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));
const version = (pkg) => JSON.parse(readFileSync(require.resolve(`${pkg}/package.json`), "utf8")).version;

for (const f of ["out/electron/main.js", "out/electron/preload.cjs", "renderer/dist/index.html", "native/build/Release/moe_engine.node"]) {
  if (!existsSync(join(root, f))) {
    console.error(`npm start: ${f} is missing; run "npm run build"`);
    process.exit(1);
  }
}

let electronBinary;
try {
  electronBinary = require("electron"); // the electron package exports the binary's path
} catch (e) {
  console.error(`npm start: the Electron binary is not installed (${e.message.split("\n")[0]}); run "npm install" with internet access and without ELECTRON_SKIP_BINARY_DOWNLOAD`);
  process.exit(1);
}

const electronVersion = version("electron");
const sqliteVersion = version("better-sqlite3");
const dest = join(root, "out/electron-native");
const binding = join(dest, "node_modules/better-sqlite3/build/Release/better_sqlite3.node");
const stampFile = join(dest, "stamp.json");
const stamp = JSON.stringify({ electronVersion, sqliteVersion });

if (!existsSync(binding) || !existsSync(stampFile) || readFileSync(stampFile, "utf8") !== stamp) {
  console.error(`npm start: building better-sqlite3 ${sqliteVersion} for Electron ${electronVersion} (once) ...`);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(join(dest, "node_modules"), { recursive: true });
  writeFileSync(join(dest, "package.json"), JSON.stringify({ name: "moe-studio-electron-native", version: "0.0.0", private: true, dependencies: { "better-sqlite3": sqliteVersion } }));
  const src = dirname(require.resolve("better-sqlite3/package.json"));
  cpSync(src, join(dest, "node_modules/better-sqlite3"), { recursive: true, filter: (p) => !p.startsWith(join(src, "build")) });
  const { rebuild } = await import("@electron/rebuild");
  try {
    await rebuild({ buildPath: dest, electronVersion, onlyModules: ["better-sqlite3"], force: true });
  } catch (e) {
    console.error(`npm start: could not build better-sqlite3 for Electron (it needs Electron's headers from the internet): ${String(e.message ?? e).split("\n")[0]}`);
    process.exit(1);
  }
  writeFileSync(stampFile, stamp);
}

const child = spawn(electronBinary, [root, ...process.argv.slice(2)], {
  stdio: "inherit",
  env: { ...process.env, MOE_SQLITE_BINDING: binding },
});
for (const s of ["SIGINT", "SIGTERM"]) process.on(s, () => child.kill(s));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
