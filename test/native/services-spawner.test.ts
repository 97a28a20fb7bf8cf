// EngineHost's pluggable spawner (Electron passes a utilityProcess adapter): the services start every worker
// through it, including the one that replaces a crashed worker, and an exit reported with a code only (as
// utilityProcess does) still produces the crash message and the reload.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import type { EventName, EventPayload } from "../../electron/contract.js";
import { forkWorker, type WorkerProcess, type WorkerSpawner } from "../../electron/engine/host.js";
import { createDispatcher } from "../../electron/rpc.js";
import { createAppServices } from "../../electron/services/app.js";
import { fixtureNames, modelDir } from "./fixtures.js";

const names = fixtureNames();
const MODEL = modelDir(names.includes("qwen3_moe") ? "qwen3_moe" : names[0]);
const dataDir = mkdtempSync(join(tmpdir(), "moe-spawner-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

it("every worker comes from the given spawner; a code-only exit is reported and recovered from", async () => {
  const spawned: string[] = [];
  const fork = forkWorker();
  // Like utilityProcess: exit reports a code, never a signal.
  const spawnWorker: WorkerSpawner = (modulePath) => {
    spawned.push(modulePath);
    const w = fork(modulePath);
    return {
      get pid() {
        return w.pid;
      },
      send: (m) => w.send(m),
      on: ((event: "message" | "exit", l: (...a: unknown[]) => void) =>
        event === "exit" ? w.on("exit", (code, signal) => l(code ?? (signal ? 128 + 9 : null), null)) : w.on("message", l)) as WorkerProcess["on"],
      kill: () => w.kill(),
    };
  };
  const events: Array<{ name: EventName; payload: unknown }> = [];
  const waiters: Array<() => void> = [];
  const services = await createAppServices({
    dataDir,
    transport: "ipc",
    spawnWorker,
    pickFolder: async () => "/picked",
    initialModel: MODEL,
    emit: (name, payload) => {
      events.push({ name, payload });
      waiters.splice(0).forEach((w) => w());
    },
  });
  const until = async (pred: () => boolean) => {
    while (!pred()) await new Promise<void>((r) => waiters.push(r));
  };
  try {
    const dispatch = createDispatcher(services.handlers, { validateOutput: true });
    await services.initialLoad;
    expect(await dispatch("models.status", {})).toMatchObject({ state: "ready" });
    expect(await dispatch("app.info", {})).toMatchObject({ transport: "ipc", canPickFolder: true });
    expect(await dispatch("models.pickFolder", {})).toEqual({ dir: "/picked" });
    expect(spawned).toHaveLength(1);
    expect(spawned[0]).toMatch(/worker\.js$/);

    const c = (await dispatch("conversations.create", {})) as { id: string };
    await dispatch("conversations.update", { id: c.id, sampling: { maxTokens: 200, temperature: 1, seed: 2 } });
    const n = events.length;
    await dispatch("chat.send", { conversationId: c.id, content: "hello" });
    await until(() => events.slice(n).some((e) => e.name === "chat.delta"));
    process.kill(services.enginePid()!, "SIGKILL");
    await until(() => events.slice(n).some((e) => e.name === "chat.done"));
    const done = events.slice(n).find((e) => e.name === "chat.done")!.payload as EventPayload<"chat.done">;
    expect(done.message.status).toBe("error");
    expect(done.message.error).toBe("The engine stopped unexpectedly (code 137) and this reply was cut off. Send again to retry.");
    await until(() => events.slice(n).some((e) => e.name === "engine.status" && (e.payload as EventPayload<"engine.status">).state === "ready"));
    expect(spawned).toHaveLength(2);
    const m = events.length;
    await dispatch("chat.send", { conversationId: c.id, content: "again" });
    await until(() => events.slice(m).some((e) => e.name === "chat.done"));
    expect((events.slice(m).find((e) => e.name === "chat.done")!.payload as EventPayload<"chat.done">).message.status).toBe("complete");
  } finally {
    await services.dispose();
  }
});
