// `moe-studio serve` as a user runs it: one URL line on stdout when ready (with its token), a working server, the
// token from --token or MOE_STUDIO_TOKEN, and a clean stop on SIGTERM/SIGINT that takes the engine worker with it. (Needs `npx tsc`; the renderer is a stand-in folder passed
// with MOE_STUDIO_RENDERER_DIR so this does not need `vite build`.)
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { MODELS, ROOT } from "./fixtures.js";
import { freePort } from "../helpers/free-port.js";

const BIN = join(ROOT, "electron/bin/moe-studio.mjs");
const LINE = /^moe-studio serve: http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9._~-]+)$/;
let tmp: string;
let staticDir: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "moe-serve-cli-"));
  staticDir = join(tmp, "dist");
  mkdirSync(staticDir);
  writeFileSync(join(staticDir, "index.html"), "<!doctype html><title>MoE Studio</title>");
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function serve(args: string[], env: Record<string, string> = { MOE_STUDIO_RENDERER_DIR: staticDir }) {
  const child = spawn(process.execPath, [BIN, "serve", ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL line; stdout: ${out} stderr: ${err}`)), 60_000);
    child.stdout!.on("data", () => {
      if (out.includes("\n")) {
        clearTimeout(timer);
        resolve(out.split("\n")[0]);
      }
    });
    child.on("exit", () => reject(new Error(`exited; stdout: ${out} stderr: ${err}`)));
  });
  ready.catch(() => {});
  return { child, ready, exited, out: () => out, err: () => err };
}

/** models.status over the app's WebSocket API, asked every 200 ms until the model is ready (or 60 s pass). */
async function readyStatus(ws: WebSocket): Promise<{ state: string; model: { device: string } | null }> {
  const status = async () =>
    new Promise<{ state: string; model: { device: string } | null }>((resolve) => {
      ws.once("message", (d) => resolve(JSON.parse(d.toString()).output));
      ws.send(JSON.stringify({ t: "call", id: 1, name: "models.status", input: {} }));
    });
  const end = Date.now() + 60_000;
  let st = await status();
  while (st.state !== "ready" && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    st = await status();
  }
  return st;
}

/** Every descendant pid of `pid` (Linux /proc). */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const walk = (p: number) => {
    const taskDir = `/proc/${p}/task`;
    if (!existsSync(taskDir)) return;
    for (const t of readdirSync(taskDir)) {
      let kids = "";
      try {
        kids = readFileSync(`${taskDir}/${t}/children`, "utf8");
      } catch {
        continue;
      }
      for (const k of kids.trim().split(/\s+/).filter(Boolean).map(Number)) {
        found.push(k);
        walk(k);
      }
    }
  };
  walk(pid);
  return found;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z");
  } catch {
    return false;
  }
};

async function waitFor(cond: () => boolean, ms: number) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

describe("moe-studio serve", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`prints exactly its URL line, serves, and exits cleanly on ${signal} with the engine worker`, async () => {
      const s = serve(["--port", "0", "--data", join(tmp, `data-${signal}`), "--model", join(MODELS, "qwen3_moe")]);
      const line = await s.ready;
      const m = LINE.exec(line);
      expect(m, line).not.toBeNull();
      const port = Number(m![1]);
      const token = m![2];
      expect(Buffer.from(token, "base64url").length).toBeGreaterThanOrEqual(16); // ≥ 128 random bits
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(401);
      const signIn = await fetch(`http://127.0.0.1:${port}/?token=${token}`, { redirect: "manual" });
      expect(signIn.status).toBe(302);
      const cookie = signIn.headers.get("set-cookie")!.split(";")[0];
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { cookie } });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("MoE Studio");

      // the model loads in an engine worker (a child process of the server)
      const ws = new WebSocket(`ws://127.0.0.1:${port}/api`, { origin: `http://127.0.0.1:${port}`, headers: { cookie } });
      await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
      expect((await readyStatus(ws)).state).toBe("ready");
      const workers = descendants(s.child.pid!);
      expect(workers.length).toBeGreaterThan(0);

      const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
      s.child.kill(signal);
      const exit = await s.exited;
      expect(exit.code, s.err()).toBe(0);
      expect(await closed).toBe(1001); // clients are told the server is going away
      expect(await waitFor(() => workers.every((p) => !alive(p)), 10_000)).toBe(true);
      expect(s.out().split("\n").filter(Boolean)).toEqual([line]); // one line on stdout, nothing else
    });
  }

  it("says to build the renderer when renderer/dist is missing", async () => {
    const s = serve(["--port", "0", "--data", join(tmp, "data-missing")], { MOE_STUDIO_RENDERER_DIR: join(tmp, "nowhere") });
    const exit = await s.exited;
    expect(exit.code).toBe(1);
    expect(s.out()).toBe("");
    expect(s.err()).toMatch(/npm run build:renderer/);
    expect(s.err().trim().split("\n")).toHaveLength(1);
  });

  /** The token a server started with `args` and `env` printed, and whether it lets that token (only) in. */
  async function servedToken(args: string[], env: Record<string, string>): Promise<string> {
    const s = serve(["--port", "0", "--data", join(tmp, "data-token"), ...args], { MOE_STUDIO_RENDERER_DIR: staticDir, ...env });
    try {
      const m = LINE.exec(await s.ready);
      expect(m).not.toBeNull();
      const base = `http://127.0.0.1:${m![1]}/`;
      expect((await fetch(base, { headers: { authorization: `Bearer ${m![2]}` } })).status).toBe(200);
      expect((await fetch(base, { headers: { authorization: "Bearer some-other-token-1234" } })).status).toBe(401);
      return m![2];
    } finally {
      s.child.kill("SIGTERM");
      await s.exited;
    }
  }

  it("takes its token from --token or MOE_STUDIO_TOKEN (--token wins); a new random one each start otherwise", async () => {
    expect(await servedToken(["--token", "flag-token-0123456789"], {})).toBe("flag-token-0123456789");
    expect(await servedToken([], { MOE_STUDIO_TOKEN: "env-token-0123456789" })).toBe("env-token-0123456789");
    expect(await servedToken(["--token=flag-token-0123456789"], { MOE_STUDIO_TOKEN: "env-token-0123456789" })).toBe("flag-token-0123456789");
    const a = await servedToken([], { MOE_STUDIO_TOKEN: "" });
    const b = await servedToken([], { MOE_STUDIO_TOKEN: "" });
    expect(a).not.toBe(b);
  });

  it("refuses a weak or malformed token and an --allow-dir that is not a folder, before it listens", async () => {
    for (const [args, env, says] of [
      [["--token", "short"], {}, /--token: a token needs at least 16 characters, got 5/],
      [["--token", "has spaces in it, too many"], {}, /--token: a token may contain only letters, digits/],
      [[], { MOE_STUDIO_TOKEN: "tiny" }, /MOE_STUDIO_TOKEN: a token needs at least 16 characters/],
      [["--allow-dir", join(tmp, "no-such-folder")], {}, /--allow-dir .*no-such-folder: no such folder/],
    ] as const) {
      const s = serve(["--port", "0", "--data", join(tmp, "data-bad"), ...args], { MOE_STUDIO_RENDERER_DIR: staticDir, ...env });
      expect((await s.exited).code, s.err()).toBe(1);
      expect(s.out()).toBe("");
      expect(s.err()).toMatch(says);
    }
  });

  it("lets clients name files in each --allow-dir folder, and nowhere else", async () => {
    const allowed = [join(tmp, "allowed-a"), join(tmp, "allowed-b")];
    for (const d of allowed) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "picked.jsonl"), `${JSON.stringify({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }] })}\n`);
    }
    writeFileSync(join(tmp, "not-allowed.jsonl"), "{}\n");
    const s = serve(["--port", "0", "--data", join(tmp, "data-allow"), "--allow-dir", allowed[0], `--allow-dir=${allowed[1]}`]);
    try {
      const m = LINE.exec(await s.ready)!;
      const ws = new WebSocket(`ws://127.0.0.1:${m[1]}/api`, { origin: `http://127.0.0.1:${m[1]}`, headers: { authorization: `Bearer ${m[2]}` } });
      await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
      let id = 0;
      const scan = (path: string) =>
        new Promise<{ ok: boolean; output?: { fileName: string }; error?: { message: string } }>((resolve) => {
          const mine = ++id;
          const onMessage = (d: WebSocket.RawData) => {
            const msg = JSON.parse(d.toString());
            if (msg.t !== "result" || msg.id !== mine) return;
            ws.off("message", onMessage);
            resolve(msg);
          };
          ws.on("message", onMessage);
          ws.send(JSON.stringify({ t: "call", id: mine, name: "datasets.import.scan", input: { source: { kind: "path", path } } }));
        });
      for (const d of allowed) expect((await scan(join(d, "picked.jsonl"))).output?.fileName).toBe("picked.jsonl");
      const outside = await scan(join(tmp, "not-allowed.jsonl"));
      expect(outside.ok).toBe(false);
      expect(outside.error?.message).toMatch(/is outside the folders this server may read/);
      for (const d of allowed) expect(outside.error?.message).toContain(d);
      ws.close();
    } finally {
      s.child.kill("SIGTERM");
      await s.exited;
    }
  });

  it("--device emu --kv-cache int8 --threads 1: the model loads so (over the settings' f16); bad values are refused before it listens", async () => {
    const bad = serve(["--port", "0", "--device", "gpu"]);
    expect((await bad.exited).code).toBe(1);
    expect(bad.err()).toMatch(/--device must be one of auto, cpu, cuda, emu, got "gpu"/);
    const badKv = serve(["--port", "0", "--kv-cache", "q8"]);
    expect((await badKv.exited).code).toBe(1);
    expect(badKv.err()).toMatch(/--kv-cache must be f32, f16 or int8, got "q8"/);
    const s = serve(["--port", "0", "--data", join(tmp, "data-emu"), "--model", join(MODELS, "qwen3_moe"), "--device", "emu", "--kv-cache", "int8", "--threads", "1"]);
    const m = LINE.exec(await s.ready)!;
    const port = Number(m[1]);
    const signIn = await fetch(`http://127.0.0.1:${port}/?token=${m[2]}`, { redirect: "manual" });
    const cookie = signIn.headers.get("set-cookie")!.split(";")[0];
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api`, { origin: `http://127.0.0.1:${port}`, headers: { cookie } });
    await new Promise((r, j) => (ws.once("open", r), ws.once("error", j)));
    const st = await readyStatus(ws);
    expect(st.state).toBe("ready");
    expect(st.model).toMatchObject({ device: "emu", kvCache: "int8", threads: 1 });
    ws.close();
    s.child.kill("SIGTERM");
    expect((await s.exited).code).toBe(0);
  });

  it("rejects a bad --port", async () => {
    const s = serve(["--port", "http"]);
    expect((await s.exited).code).toBe(1);
    expect(s.err()).toMatch(/--port must be an integer/);
  });

  it("refuses --adapter without --model, and a folder that is not an adapter, before it listens", async () => {
    const lone = serve(["--port", "0", "--adapter", join(ROOT, "test/fixtures/goldens/train/qwen3_moe/adapter")]);
    expect((await lone.exited).code).toBe(1);
    expect(lone.err()).toMatch(/--adapter needs --model DIR/);
    const notOne = serve(["--port", "0", "--model", join(MODELS, "qwen3_moe"), "--adapter", join(MODELS, "qwen3_moe")]);
    expect((await notOne.exited).code).toBe(1);
    expect(notOne.err()).toMatch(/not a PEFT adapter folder \(.*adapter_config\.json is missing\)/);
    expect(lone.out() + notOne.out()).toBe("");
  });

  it("--config deploy.yaml: the UI and the API on the file's ports, paths from the file's folder; a flag beats the file", async () => {
    const dir = join(tmp, "deploy");
    mkdirSync(dir);
    const [web, apiPort, other] = [await freePort(), await freePort(), await freePort()];
    const file = join(dir, "deploy.yaml");
    writeFileSync(file, `# one-command deploy\nmodel: ${join(MODELS, "qwen3_moe")}\ndata_dir: state\nweb_port: ${web}\napi_port: ${apiPort}\napi_key: sk-deploy-12345678\n`);
    const s = serve(["--config", file, "--api-port", String(other)]);
    const line = await s.ready;
    expect(LINE.exec(line)?.[1]).toBe(String(web));
    await waitFor(() => s.out().includes("OpenAI-compatible API"), 30_000);
    expect(s.out()).toContain(`OpenAI-compatible API at http://127.0.0.1:${other}/v1`); // --api-port beat api_port
    const models = await fetch(`http://127.0.0.1:${other}/v1/models`, { headers: { authorization: "Bearer sk-deploy-12345678" } });
    expect(models.status).toBe(200);
    expect(((await models.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual(["qwen3_moe"]);
    expect(existsSync(join(dir, "state"))).toBe(true); // data_dir: state is next to the file
    s.child.kill("SIGTERM");
    expect((await s.exited).code).toBe(0);
  });

  it("--config: a bad field is named with its line before anything listens; web_host elsewhere needs a token", async () => {
    const bad = join(tmp, "bad.yaml");
    writeFileSync(bad, "web_port: 8377\napi_port: eighty\n");
    const s = serve(["--config", bad]);
    expect((await s.exited).code).toBe(1);
    expect(s.err()).toBe(`moe-studio: ${bad}:2:11: api_port: must be an integer in [0, 65535] (0: any free port), got "eighty"\n`);
    const typo = join(tmp, "typo.yaml");
    writeFileSync(typo, "web_prot: 1\n");
    const t = serve(["--config", typo]);
    expect((await t.exited).code).toBe(1);
    expect(t.err()).toContain(`${typo}:1:1: web_prot: unknown field (did you mean web_port?)`);
    const open = join(tmp, "open.yaml");
    writeFileSync(open, "web_host: 0.0.0.0\nweb_port: 0\n");
    const o = serve(["--config", open], { MOE_STUDIO_RENDERER_DIR: staticDir, MOE_STUDIO_TOKEN: "" });
    expect((await o.exited).code).toBe(1);
    expect(o.err()).toMatch(/--host 0\.0\.0\.0 needs --token T \(or MOE_STUDIO_TOKEN, or web_token in the config\)/);
    expect(s.out() + t.out() + o.out()).toBe("");
  });

  it("--host 0.0.0.0 with a token: reached by any name the browser uses, the token still required, the WebSocket same-origin", async () => {
    const token = "deploy-token-abcdefghijkl";
    const s = serve(["--port", "0", "--host", "0.0.0.0", "--token", token, "--data", join(tmp, "data-wide")]);
    const port = Number(LINE.exec(await s.ready)![1]);
    const get = (host: string, headers: Record<string, string> = {}) =>
      new Promise<number>((resolve, reject) => {
        request({ host: "127.0.0.1", port, path: "/", headers: { host, ...headers } }, (res) => (res.resume(), resolve(res.statusCode!))).on("error", reject).end();
      });
    const name = `studio.lan:${port}`;
    expect(await get(name)).toBe(401); // another name is fine (not 421), the token is not optional
    expect(await get(name, { authorization: `Bearer ${token}` })).toBe(200);
    expect(await get("bad host!", { authorization: `Bearer ${token}` })).toBe(421);
    const open = (origin: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/api`, { origin, headers: { host: name, authorization: `Bearer ${token}` } });
        ws.once("open", () => (ws.close(), resolve("open")));
        ws.once("unexpected-response", (_req, res) => resolve(String(res.statusCode)));
        ws.once("error", () => resolve("error"));
      });
    expect(await open(`http://${name}`)).toBe("open");
    expect(await open("http://evil.example")).toBe("403");
    s.child.kill("SIGTERM");
    expect((await s.exited).code).toBe(0);
  });
});

