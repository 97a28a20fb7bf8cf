#!/usr/bin/env node
// `npx moe-studio <command>`: runs the compiled CLI (out/, built by `npm install` / `npm run build:ts`).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const cli = join(root, "out/electron/cli.js");
if (!existsSync(cli)) {
  console.error(`moe-studio: ${cli} is missing; run "npm run build" in ${root}`);
  process.exit(2);
}
const { main } = await import(pathToFileURL(cli).href);
process.exitCode = await main(process.argv.slice(2));
