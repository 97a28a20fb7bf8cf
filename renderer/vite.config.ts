// Builds the renderer (React) into renderer/dist. `base: "./"` so the same files load from file:// in Electron
// and from http://127.0.0.1 under `moe-studio serve`.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2000,
  },
  server: { host: "127.0.0.1" },
});
