// The renderer's view of the contract: type-only imports, so zod never enters the bundle.
export type {
  Api,
  ApiServerStatus,
  AppInfo,
  CallInput,
  CatalogEntry,
  DownloadProgress,
  Endpoint,
  FitEstimate,
  HubSearchResult,
  HubSource,
  LibraryStatus,
  LocalModel,
  LocalOrigin,
  MachineMemory,
  RepoDetails,
  CallName,
  CallOutput,
  Conversation,
  ConversationSummary,
  DatasetSummary,
  EngineStatus,
  EventName,
  EventPayload,
  GenerationStats,
  ImportReport,
  ImportStatus,
  Message,
  ModelCard,
  Preset,
  QuantizeResult,
  Job,
  JobKind,
  JobStatus,
  RecentModel,
  RejectedLine,
  Sample,
  SampleMessage,
  SampleRow,
  RpcErrorCode,
  SamplingDefaults,
  SamplingSettings,
  Settings,
  WireMessage,
} from "../../../electron/contract.js";

import type { Api } from "../../../electron/contract.js";

export type ConnectionState = "connecting" | "open" | "closed";

/** `Api` plus what a transport knows about itself. */
export interface Transport extends Api {
  readonly kind: "ipc" | "ws";
  /** Local path of a dropped file/folder (Electron only). */
  pathForFile?(file: File): string;
  /** Connection state (always "open" over IPC). */
  connection(): ConnectionState;
  onConnection(listener: (state: ConnectionState) => void): () => void;
}

/** Shape the Electron preload exposes as `window.moeApi`. */
export interface PreloadApi extends Api {
  pathForFile?(file: File): string;
}

/** An error from a call: `code` from the contract, `message` human-readable. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}
