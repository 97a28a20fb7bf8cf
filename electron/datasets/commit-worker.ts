// Worker thread entry for commitImport (see commit.ts): workerData = { dbFile, request, cancel: SharedArrayBuffer }.
// Messages to the parent: CommitMessage.
import { parentPort, workerData } from "node:worker_threads";
import { openDatabase } from "../store/db.js";
import { CommitCancelled, commitImport, type CommitMessage, type CommitRequest } from "./commit.js";

const { dbFile, request, cancel } = workerData as { dbFile: string; request: CommitRequest; cancel: SharedArrayBuffer };
const flag = new Int32Array(cancel);
const post = (m: CommitMessage) => parentPort!.postMessage(m);

let db;
try {
  db = openDatabase(dbFile);
  const datasetId = commitImport(db, request, (inserted) => post({ t: "progress", inserted }), () => Atomics.load(flag, 0) !== 0);
  post({ t: "done", datasetId });
} catch (e) {
  post(e instanceof CommitCancelled ? { t: "cancelled" } : { t: "error", message: e instanceof Error ? e.message : String(e) });
} finally {
  db?.close();
}
