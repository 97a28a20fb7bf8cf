// Connects the stores to a transport: event streams into stores, and a full refresh after every (re)connect.
import type { Transport } from "../api/types.js";
import { useChat } from "./chat.js";
import { rememberedConversation, useConversations } from "./conversations.js";
import { useDatasets } from "./datasets.js";
import { useFinetune } from "./finetune.js";
import { useModels } from "./models.js";
import { finishedWriters, useLibrary } from "./library.js";
import { useSamples } from "./samples.js";
import { useJobs } from "./jobs.js";
import { useSettings } from "./settings.js";
import { useUi } from "./ui.js";

export async function refreshAll(): Promise<void> {
  await Promise.all([useSettings.getState().load(), useModels.getState().refresh(), useConversations.getState().refresh(), useJobs.getState().load()]);
  // Datasets load when their view first opens; after a reconnect, what was loaded is loaded again.
  if (useDatasets.getState().loaded) {
    await useDatasets.getState().refresh();
    useSamples.getState().reload();
  }
  if (useFinetune.getState().loaded) await useFinetune.getState().refresh();
  if (useLibrary.getState().local) await useLibrary.getState().loadLocal();
  const conv = useConversations.getState();
  const current = conv.currentId ?? rememberedConversation();
  if (current && conv.list.some((c) => c.id === current)) await conv.select(current, { show: false });
  else if (!conv.currentId && conv.list.length > 0) await conv.select(conv.list[0].id, { show: false });
  else if (conv.currentId) await useChat.getState().load(conv.currentId);
}

/** Subscribes every store to its events; returns an unsubscribe. */
export function connectStores(transport: Transport): () => void {
  const offs = [
    transport.on("chat.delta", (e) => useChat.getState().onDelta(e)),
    transport.on("chat.done", (e) => useChat.getState().onDone(e)),
    transport.on("engine.status", (s) => useModels.getState().setStatus(s)),
    transport.on("models.progress", (p) => useModels.getState().setProgress(p)),
    transport.on("datasets.changed", (e) => useDatasets.getState().onChanged(e)),
    transport.on("jobs.job", (j) => useJobs.getState().onJob(j)),
    transport.on("jobs.removed", (e) => useJobs.getState().onRemoved(e)),
    transport.on("finetune.run", (r) => useFinetune.getState().onRun(r)),
    transport.on("finetune.point", (p) => useFinetune.getState().onPoint(p)),
    transport.on("finetune.routing", (p) => useFinetune.getState().onRouting(p)),
    // views that follow their own jobs: a download, an import's scan, a dataset's token count, a run's training and export
    transport.on("jobs.job", (j) => useLibrary.getState().onJob(j)),
    transport.on("jobs.job", (j) => useDatasets.getState().onJob(j)),
    transport.on("jobs.job", (j) => useSamples.getState().onJob(j)),
    transport.on("jobs.job", (j) => useFinetune.getState().onJob(j)),
  ];
  // an import dropped on the Finetune view that ends without a dataset ("Import nothing", a failed scan)
  offs.push(
    useDatasets.subscribe((next, prev) => {
      const gone = prev.import && (!next.import || next.import.phase === "failed");
      if (gone && useFinetune.getState().awaitingImport && next.import?.phase !== "committing") useFinetune.setState({ awaitingImport: false });
    }),
  );
  // an export, quantize, GGUF or download job that finishes wrote into the models folder: the local list reads it
  // again (once it has been shown; the Models view loads it when it opens)
  offs.push(
    useJobs.subscribe((next, prev) => {
      if (useLibrary.getState().local && finishedWriters(prev.jobs, next.jobs)) void useLibrary.getState().loadLocal();
    }),
  );
  let wasOpen = transport.connection() === "open";
  useUi.getState().setConnection(transport.connection());
  offs.push(
    transport.onConnection((state) => {
      useUi.getState().setConnection(state);
      if (state === "open" && !wasOpen) void refreshAll();
      wasOpen = state === "open";
    }),
  );
  return () => offs.forEach((off) => off());
}
