// The text process: a small Node process the app starts (bounded-text.ts) to run chat templates and tokenizers
// under limits, in its worker thread (text-thread.ts). It is a process, not a thread of the app, because V8 aborts
// the whole process when one allocation overshoots a worker's heap limit (a template can make a 268M-character
// string and upper-case it): that abort ends this process only, and the app says which template did it.
// Electron's utilityProcess talks through process.parentPort; child_process.fork through process.send.
import { TextThread } from "./text-thread.js";
import { TextLimitError, type ProcessReply, type ProcessRequest } from "./text-protocol.js";

type ParentPort = { postMessage(m: unknown): void; on(e: "message", l: (e: { data: unknown }) => void): void };
const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;

function send(m: ProcessReply): void {
  if (parentPort) parentPort.postMessage(m);
  else process.send?.(m);
}

let thread: TextThread | null = null;

function onRequest(req: ProcessRequest): void {
  if (req.type === "config") {
    // The parent tells where a job is when a phase runs long, so a crash of this process can be explained.
    thread = new TextThread(req.limits, (p) => send({ type: "slow", seq: p.tag, phase: p.phase, item: p.item }));
    return;
  }
  if (!thread) throw new Error("the text process got a job before its limits");
  const { seq, job } = req;
  thread.run(job, seq).then(
    (result) => send({ type: "done", seq, ok: true, result }),
    (e: Error) => send({ type: "done", seq, ok: false, limit: e instanceof TextLimitError, message: e.message }),
  );
}

if (parentPort) parentPort.on("message", (e) => onRequest(e.data as ProcessRequest));
else {
  process.on("message", (m) => onRequest(m as ProcessRequest));
  // The app went away: nothing is left to answer.
  process.on("disconnect", () => process.exit(0));
}
