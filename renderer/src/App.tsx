// The shell: navigation rail, banners, the current view, and a window-wide drop target for model folders.
import { useEffect, useRef, useState, type DragEvent, type ReactElement } from "react";
import { api } from "./api/index.js";
import { Banners } from "./components/Banners.js";
import { IconChat, IconCube, IconFolder, IconGear } from "./components/icons.js";
import { useLang, useResolvedTheme, useT } from "./hooks.js";
import { useChat } from "./stores/chat.js";
import { displayTitle, useConversations } from "./stores/conversations.js";
import { useModels } from "./stores/models.js";
import { useUi, type View } from "./stores/ui.js";
import { ChatView } from "./views/ChatView.js";
import { ModelsView } from "./views/ModelsView.js";
import { SettingsView } from "./views/SettingsView.js";

function Rail() {
  const t = useT();
  const view = useUi((s) => s.view);
  const state = useModels((s) => s.status.state);
  const items: [View, string, () => ReactElement][] = [
    ["chat", t("nav.chat"), IconChat],
    ["models", t("nav.models"), IconCube],
    ["settings", t("nav.settings"), IconGear],
  ];
  return (
    <nav className="rail" aria-label={t("nav.main")}>
      <div className="logo" aria-hidden="true">
        M
      </div>
      {items.map(([v, label, Icon]) => (
        <button key={v} type="button" className={`rail-item${view === v ? " active" : ""}`} aria-current={view === v ? "page" : undefined} onClick={() => useUi.getState().setView(v)} title={label}>
          <Icon />
          <span>{label}</span>
          {v === "models" && <span className={`rail-dot state-${state}`} aria-hidden="true" />}
        </button>
      ))}
    </nav>
  );
}

function hasFiles(e: DragEvent): boolean {
  return Array.from(e.dataTransfer?.types ?? []).includes("Files");
}

export function App() {
  const t = useT();
  const lang = useLang();
  const theme = useResolvedTheme();
  const view = useUi((s) => s.view);
  const convTitle = useChat((s) => s.conversation?.title);
  const [dragging, setDragging] = useState(false);
  const depth = useRef(0);

  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    document.documentElement.style.colorScheme = theme;
  }, [theme]);
  useEffect(() => {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }, [lang]);
  useEffect(() => {
    document.title = view === "chat" && convTitle !== undefined ? `${displayTitle(convTitle, t)} — ${t("app.name")}` : t("app.name");
  }, [view, convTitle, t]);

  // Ctrl/Cmd+Shift+O: new chat; Ctrl/Cmd+K: search conversations.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.shiftKey && e.key.toLowerCase() === "o") {
        e.preventDefault();
        void useConversations.getState().create();
      } else if (mod && !e.shiftKey && e.key.toLowerCase() === "k") {
        e.preventDefault();
        useUi.getState().setView("chat");
        requestAnimationFrame(() => document.querySelector<HTMLInputElement>(".search input")?.focus());
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const onDrop = (e: DragEvent) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth.current = 0;
    setDragging(false);
    const file = e.dataTransfer.files[0];
    const transport = api();
    const path = file && transport.pathForFile ? transport.pathForFile(file) : "";
    if (!path) {
      useUi.getState().notify({ kind: "info", key: "banner.dropNotSupported" });
      useUi.getState().setView("models");
      return;
    }
    useUi.getState().setView("models");
    void useModels.getState().open(path);
  };

  return (
    <div
      className="app"
      onDragEnter={(e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        depth.current++;
        setDragging(true);
      }}
      onDragOver={(e) => {
        if (!hasFiles(e)) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
      }}
      onDragLeave={() => {
        depth.current = Math.max(0, depth.current - 1);
        if (depth.current === 0) setDragging(false);
      }}
      onDrop={onDrop}
    >
      <Rail />
      <main className="main">
        <Banners />
        <div className="view">{view === "chat" ? <ChatView /> : view === "models" ? <ModelsView /> : <SettingsView />}</div>
      </main>
      {dragging && (
        <div className="drop-overlay" aria-hidden="true">
          <div>
            <IconFolder />
            <span>{t("models.dropHere")}</span>
          </div>
        </div>
      )}
    </div>
  );
}
