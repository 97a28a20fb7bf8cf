// Ctrl-C / SIGTERM for the CLI's long jobs (quantize, export): the first signal aborts the job's AbortSignal (the job
// removes its temporary output), the job's own "cancelled" error becomes one line on stderr and exit code 130.
export async function runCancellable(job: (signal: AbortSignal) => Promise<number>, isCancelled: (e: unknown) => e is Error): Promise<number> {
  const ac = new AbortController();
  const onSignal = () => {
    if (!ac.signal.aborted) process.stderr.write("\ncancelling...\n");
    ac.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await job(ac.signal);
  } catch (e) {
    if (isCancelled(e)) {
      process.stderr.write(`moe-studio: ${e.message}\n`);
      return 130;
    }
    throw e;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
