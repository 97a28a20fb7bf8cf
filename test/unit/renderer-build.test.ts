// The renderer builds with vite: one script and one stylesheet, the strict CSP meta kept, no zod, nothing external.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import ts from "typescript";
import { build } from "vite";

const root = fileURLToPath(new URL("../../", import.meta.url));
const out = mkdtempSync(join(tmpdir(), "moe-renderer-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("renderer build", () => {
  it("type-checks (renderer/tsconfig.json: DOM, JSX, the contract's types)", () => {
    const file = join(root, "renderer/tsconfig.json");
    const cfg = ts.getParsedCommandLineOfConfigFile(file, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(String(d.messageText)); } });
    expect(cfg).toBeTruthy();
    const program = ts.createProgram({ rootNames: cfg!.fileNames, options: cfg!.options });
    const diags = ts.getPreEmitDiagnostics(program).map((d) => ts.formatDiagnostic(d, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => "\n" }));
    expect(diags).toEqual([]);
  }, 120_000);

  it("`npm run typecheck` checks the renderer's project too, not only electron/", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.typecheck).toMatch(/tsc -p tsconfig\.json --noEmit/);
    expect(pkg.scripts.typecheck).toMatch(/tsc -p renderer\/tsconfig\.json --noEmit/);
  });

  it("vite builds renderer/ into a self-contained folder", async () => {
    await build({ configFile: join(root, "renderer/vite.config.ts"), logLevel: "error", build: { outDir: out, emptyOutDir: true } });
    const html = readFileSync(join(out, "index.html"), "utf8");
    const csp = /http-equiv="Content-Security-Policy"\s+content="([^"]+)"/.exec(html)?.[1] ?? "";
    expect(csp).toMatch(/default-src 'self'/);
    expect(csp).toMatch(/script-src 'self'/);
    expect(csp).not.toMatch(/unsafe-(inline|eval)/);
    expect(html).not.toMatch(/<script>(?!<\/script>)/); // no inline scripts
    expect(html).not.toMatch(/https?:\/\//); // no CDN, no external fonts
    const assets = readdirSync(join(out, "assets"));
    const js = assets.filter((f) => f.endsWith(".js"));
    expect(js.length).toBeGreaterThan(0);
    expect(assets.some((f) => f.endsWith(".css"))).toBe(true);
    const code = js.map((f) => readFileSync(join(out, "assets", f), "utf8")).join("\n");
    expect(code).not.toMatch(/ZodError/); // type-only imports of the contract
    expect(code).not.toMatch(/\beval\(|new Function\(/);
    expect(code).not.toMatch(/fonts\.googleapis|cdn\.jsdelivr|unpkg\.com/);
  }, 120_000);
});
