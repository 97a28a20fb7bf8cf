// A secret inside Electron (the hub access token, the API server's key, the remote endpoints' keys): encrypted with safeStorage (the OS keychain /
// DPAPI / libsecret) into <userData>/hub-token.bin or api-key.bin (mode 0600, written to a temporary name and renamed). Where the OS offers no encryption
// (safeStorage.isEncryptionAvailable() is false, e.g. Linux without a keyring) the token is kept in memory only.
import { safeStorage } from "electron";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "./library/atomic-write.js";
import { API_KEY_FILE, ENDPOINT_KEYS_FILE, MemoryTokenStore, TOKEN_FILE, type TokenStore } from "./library/token-store.js";

export function safeTokenStore(dataDir: string, name: typeof TOKEN_FILE | typeof API_KEY_FILE | typeof ENDPOINT_KEYS_FILE = TOKEN_FILE): TokenStore {
  if (!safeStorage.isEncryptionAvailable()) return new MemoryTokenStore();
  const file = join(dataDir, name);
  return {
    kind: "safeStorage",
    get() {
      if (!existsSync(file)) return null;
      try {
        return safeStorage.decryptString(readFileSync(file)) || null;
      } catch {
        return null; // encrypted under another user or keyring: as if unset
      }
    },
    set(token) {
      if (!token) {
        rmSync(file, { force: true });
        return;
      }
      writeFileAtomic(file, safeStorage.encryptString(token), { mode: 0o600 });
    },
  };
}
