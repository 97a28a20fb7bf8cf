// The window's security settings as data: what main.ts gives BrowserWindow, the CSP every app file carries,
// which URLs the window may show, and that the preload's channel names are the contract's.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { IPC_CALL_CHANNEL, IPC_EVENT_CHANNEL } from "../../electron/contract.js";
import {
  APP_START_URL,
  contentSecurityPolicy,
  externalUrl,
  isAppUrl,
  securityHeaders,
  webPreferences,
  windowOptions,
} from "../../electron/window-options.js";

const ROOT = join(import.meta.dirname, "../..");

function directives(csp: string): Map<string, string[]> {
  return new Map(csp.split(";").map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]));
}

describe("window options", () => {
  it("the renderer is sandboxed, isolated, without Node", () => {
    const w = webPreferences("/x/preload.cjs");
    expect(w.preload).toBe("/x/preload.cjs");
    expect(w.contextIsolation).toBe(true);
    expect(w.sandbox).toBe(true);
    expect(w.nodeIntegration).toBe(false);
    expect(w.nodeIntegrationInWorker).toBe(false);
    expect(w.nodeIntegrationInSubFrames).toBe(false);
    expect(w.webSecurity).toBe(true);
    expect(w.allowRunningInsecureContent).toBe(false);
    expect(w.webviewTag).toBe(false);
    expect(windowOptions("/p").webPreferences).toEqual(webPreferences("/p"));
    expect(windowOptions("/p").show).toBe(false);
  });

  it("the CSP allows only the app's own scripts, styles and connections", () => {
    const csp = contentSecurityPolicy();
    const d = directives(csp);
    expect(d.get("default-src")).toEqual(["'self'"]);
    expect(d.get("script-src")).toEqual(["'self'"]);
    expect(d.get("style-src")).toEqual(["'self'"]);
    expect(d.get("connect-src")).toEqual(["'self'"]);
    expect(d.get("img-src")).toEqual(["'self'", "data:"]);
    expect(d.get("object-src")).toEqual(["'none'"]);
    expect(d.get("base-uri")).toEqual(["'none'"]);
    expect(d.get("frame-ancestors")).toEqual(["'none'"]);
    expect(csp).not.toMatch(/unsafe-eval|unsafe-inline|\*/);
    expect(directives(contentSecurityPolicy({ connectSrc: ["ws://127.0.0.1:5000"] })).get("connect-src")).toEqual(["'self'", "ws://127.0.0.1:5000"]);
  });

  it("every app file is served with the CSP and nosniff", () => {
    const h = securityHeaders();
    expect(h["Content-Security-Policy"]).toBe(contentSecurityPolicy());
    expect(h["X-Content-Type-Options"]).toBe("nosniff");
    expect(h["X-Frame-Options"]).toBe("DENY");
  });

  it("the window may show only the app's own pages; only http(s) links go to the system browser", () => {
    expect(isAppUrl(APP_START_URL)).toBe(true);
    expect(isAppUrl("app://moe-studio/assets/index-abc.js")).toBe(true);
    for (const u of ["https://example.com/", "file:///etc/passwd", "app://other/index.html", "javascript:alert(1)", "not a url", "http://127.0.0.1:5000/"]) {
      expect(isAppUrl(u), u).toBe(false);
    }
    expect(externalUrl("https://huggingface.co/x")).toBe("https://huggingface.co/x");
    expect(externalUrl("http://example.com")).toBe("http://example.com/");
    for (const u of ["file:///etc/passwd", "javascript:alert(1)", "smb://host/share", "app://moe-studio/", "nope"]) {
      expect(externalUrl(u), u).toBeNull();
    }
  });

  it("the preload exposes exactly moeApi { call, on, pathForFile } on the contract's channels", () => {
    const src = readFileSync(join(ROOT, "electron/preload.cts"), "utf8");
    expect(src).toContain(`const IPC_CALL_CHANNEL = "${IPC_CALL_CHANNEL}"`);
    expect(src).toContain(`const IPC_EVENT_CHANNEL = "${IPC_EVENT_CHANNEL}"`);
    expect(src.match(/exposeInMainWorld\(/g)).toHaveLength(1);
    expect(src).toContain(`exposeInMainWorld("moeApi", moeApi)`);
    const api = /const moeApi = \{([\s\S]*?)\n\};/.exec(src)![1];
    const members = [...api.matchAll(/^  (?:async )?(\w+)\(/gm)].map((m) => m[1]);
    expect(members).toEqual(["call", "on", "pathForFile"]);
    // the page never gets ipcRenderer or an Electron event object
    expect(api).not.toMatch(/return ipcRenderer|ipcRenderer\.on|_event|IpcRendererEvent/);
  });

  it("only main, preload and electron-*.ts import electron (services run in Node alone)", () => {
    const files = readdirSync(join(ROOT, "electron"), { recursive: true, encoding: "utf8" }).filter((f) => /\.c?ts$/.test(f));
    const importers = files.filter((f) => /from "electron"|require\("electron"\)/.test(readFileSync(join(ROOT, "electron", f), "utf8"))).sort();
    expect(importers.length).toBeGreaterThan(0);
    for (const f of importers) expect(f, f).toMatch(/^(main\.ts|preload\.cts|electron-[\w-]+\.ts)$/);
  });
});
