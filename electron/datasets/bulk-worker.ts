// Worker thread entry for runBulk (see bulk.ts): workerData = { dbFile, task, cancel: SharedArrayBuffer }.
// Messages to the parent: BulkMessage.
import { parentPort, workerData } from "node:worker_threads";
import { openDatabase } from "../store/db.js";
import { CommitCancelled, runBulk, type BulkMessage, type BulkTask } from "./bulk.js";

const { dbFile, task, cancel } = workerData as { dbFile: string; task: BulkTask; cancel: SharedArrayBuffer };
const flag = new Int32Array(cancel);
const post = (m: BulkMessage) => parentPort!.postMessage(m);

let db;
try {
  db = openDatabase(dbFile);
  const result = runBulk(db, task, (inserted) => post({ t: "progress", inserted }), () => Atomics.load(flag, 0) !== 0);
  post({ t: "done", result });
} catch (e) {
  if (e instanceof CommitCancelled) post({ t: "cancelled" });
  else {
    const code = (e as { code?: unknown }).code;
    post({ t: "error", message: e instanceof Error ? e.message : String(e), ...(typeof code === "string" ? { code } : {}) });
  }
} finally {
  db?.close();
}
