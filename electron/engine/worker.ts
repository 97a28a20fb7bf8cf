// The engine worker: a child process (child_process.fork here; utilityProcess in Electron) that owns the native
// addon and serves electron/engine/protocol.ts requests over the IPC channel. Heavy work runs on native threads,
// so this process's event loop stays free to pass tokens and cancellations through.
import { loadModel, type ChatSession, type LoadedModel } from "./engine.js";
import { loadAddon } from "./addon.js";
import type { HostRequest, OpArgs, OpEvent, OpName, OpReply, WorkerMessage } from "./protocol.js";

const models = new Map<number, LoadedModel>();
const sessions = new Map<number, { session: ChatSession; modelId: number; cancel?: () => void }>();
let nextId = 1;

// Electron's utilityProcess talks through process.parentPort; child_process.fork through process.send.
interface ParentPort {
  postMessage(m: unknown): void;
  on(event: "message", listener: (e: { data: unknown }) => void): void;
}
const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;

function send(m: WorkerMessage) {
  if (parentPort) parentPort.postMessage(m);
  else process.send?.(m);
}

function model(id: number): LoadedModel {
  const m = models.get(id);
  if (!m) throw new Error(`model ${id} is not loaded in the engine worker`);
  return m;
}

function session(id: number) {
  const s = sessions.get(id);
  if (!s) throw new Error(`chat session ${id} does not exist in the engine worker`);
  return s;
}

/** One handler per op of protocol.ts's table; `emit` sends the op's events before its reply. */
type Handlers = { [K in OpName]: (args: OpArgs<K>, emit: (e: OpEvent<K>) => void) => Promise<OpReply<K>> | OpReply<K> };

const handlers: Handlers = {
  async load(req, emit) {
    const m = await loadModel(req.dir, { ...req.options, onProgress: (done, total) => emit({ event: "progress", done, total }) });
    const modelId = nextId++;
    models.set(modelId, m);
    return { modelId, info: m.info };
  },
  closeModel(req) {
    for (const [sid, s] of sessions) if (s.modelId === req.modelId) {
      s.session.dispose();
      sessions.delete(sid);
    }
    models.get(req.modelId)?.close();
    models.delete(req.modelId);
    return null;
  },
  createSession(req) {
    const s = model(req.modelId).chat({ ...(req.contextLength ? { contextLength: req.contextLength } : {}), ...(req.adapter !== undefined ? { adapter: req.adapter } : {}) });
    const sessionId = nextId++;
    sessions.set(sessionId, { session: s, modelId: req.modelId });
    return { sessionId, contextLength: s.contextLength };
  },
  disposeSession(req) {
    sessions.get(req.sessionId)?.session.dispose();
    sessions.delete(req.sessionId);
    return null;
  },
  resetSession(req) {
    session(req.sessionId).session.reset();
    return null;
  },
  async logits(req) {
    const rows = await model(req.modelId).logits(req.ids, req.adapter !== undefined ? { adapter: req.adapter } : {});
    return rows.map((r) => Array.from(r));
  },
  async generate(req, emit) {
    const s = session(req.sessionId);
    const gen = s.session.generate(req.input, req.options);
    s.cancel = () => gen.cancel();
    try {
      for await (const text of gen) emit({ event: "delta", text, tokens: gen.tokens });
      return await gen.result;
    } finally {
      s.cancel = undefined;
    }
  },
  cancel(req) {
    sessions.get(req.sessionId)?.cancel?.();
    return null;
  },
  routing(req) {
    return model(req.modelId).native.routing({ reset: req.reset === true });
  },
  systemInfo() {
    const { threads, simd, cuda } = loadAddon().systemInfo();
    return { threads, simd, cuda };
  },
};

async function handle(req: HostRequest): Promise<unknown> {
  const { id, op, ...args } = req;
  const h = (handlers as Record<string, ((a: unknown, emit: (e: object) => void) => unknown) | undefined>)[op];
  if (!Object.hasOwn(handlers, op) || !h) throw new Error(`the engine worker has no op "${String(op)}"`);
  return h(args, (e) => send({ id, ...e } as WorkerMessage));
}

function onRequest(req: HostRequest) {
  handle(req).then(
    (value) => send({ id: req.id, ok: true, value }),
    (e) => send({ id: req.id, ok: false, error: e instanceof Error ? e.message : String(e) }),
  );
}

if (parentPort) parentPort.on("message", (e) => onRequest(e.data as HostRequest));
else {
  process.on("message", onRequest);
  // The host going away (its IPC channel closing) ends the worker.
  process.on("disconnect", () => process.exit(0));
}
