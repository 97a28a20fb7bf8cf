// Entry: pick the transport, wire the stores to its events, load everything, render.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { api } from "./api/index.js";
import { App } from "./App.js";
import { connectStores, refreshAll } from "./stores/wiring.js";
import "./styles.css";

const transport = api();
connectStores(transport);
if (transport.connection() === "open") void refreshAll();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
