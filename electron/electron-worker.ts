// The engine worker inside Electron: a utilityProcess (a Node process Chromium manages, no window) instead of
// child_process.fork, adapted to EngineHost's WorkerProcess. A native crash or an OOM kill ends that process only;
// EngineHost fails what was pending, reports the exit, and the next request starts a new one. The text process
// (chat templates and tokenizers under limits, electron/text/bounded-text.ts) starts the same way.
import { utilityProcess, type UtilityProcess } from "electron";
import type { HostRequest, WorkerMessage } from "./engine/protocol.js";
import type { WorkerProcess, WorkerSpawner } from "./engine/host.js";
import type { TextProcess, TextProcessSpawner } from "./text/bounded-text.js";

export function utilityWorkerSpawner(): WorkerSpawner {
  return (modulePath) => utilityChild<HostRequest, WorkerMessage>(modulePath, "MoE Studio engine") as unknown as WorkerProcess;
}

export function utilityTextSpawner(): TextProcessSpawner {
  return (modulePath) => utilityChild<unknown, unknown>(modulePath, "MoE Studio text") as unknown as TextProcess;
}

function utilityChild<Req, Msg>(modulePath: string, serviceName: string) {
  const child: UtilityProcess = utilityProcess.fork(modulePath, [], {
    serviceName,
    stdio: "inherit",
  });
  // Messages posted before the process has started are held until it has.
  let started = false;
  let exited = false;
  const queue: Req[] = [];
  child.once("spawn", () => {
    started = true;
    for (const m of queue.splice(0)) child.postMessage(m);
  });
  child.once("exit", () => {
    exited = true;
    queue.length = 0;
  });
  return {
    get pid() {
      return child.pid;
    },
    send(message: Req) {
      if (exited) return;
      if (started) child.postMessage(message);
      else queue.push(message);
    },
    on(event: "message" | "exit", listener: (...args: never[]) => void) {
      if (event === "message") child.on("message", (m: unknown) => (listener as (m: Msg) => void)(m as Msg));
      // utilityProcess reports an exit code only; a crash shows as a non-zero code
      else child.on("exit", (code: number) => (listener as (c: number | null, s: string | null) => void)(code, null));
      return undefined;
    },
    kill() {
      if (!exited) child.kill();
    },
  };
}
