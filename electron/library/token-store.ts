// Where the hub access token lives. The services see only this interface; the token is sent to the hub's own
// origin and never back to the renderer (which learns only whether one is set).
//   Electron: electron/electron-token-store.ts (encrypted with the OS keychain via safeStorage, in the data folder)
//   `serve` and tests: MemoryTokenStore — kept in memory only, gone when the server stops (no plain-text token on disk)
//   CLI `pull`: --token or HF_TOKEN, never stored
/** The encrypted token's file in the data folder (Electron); its atomic-write leftovers are swept by services/leftovers.ts. */
export const TOKEN_FILE = "hub-token.bin";
/** The API server's key, kept the same way (electron/server/openai/control.ts). */
export const API_KEY_FILE = "api-key.bin";
/** The keys of remote endpoints, one encrypted JSON object { endpointId: key } (services/endpoints.ts). */
export const ENDPOINT_KEYS_FILE = "endpoint-keys.bin";

export interface TokenStore {
  readonly kind: "safeStorage" | "memory";
  get(): string | null;
  set(token: string | null): void;
}

export class MemoryTokenStore implements TokenStore {
  readonly kind = "memory" as const;
  private token: string | null;
  constructor(initial: string | null = null) {
    this.token = initial || null;
  }
  get(): string | null {
    return this.token;
  }
  set(token: string | null): void {
    this.token = token || null;
  }
}
