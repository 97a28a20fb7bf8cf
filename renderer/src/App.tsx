// The shell: navigation rail, banners, the current view, and a window-wide drop target (datasets, model folders).
import { useEffect, type ReactElement } from "react";
import { ActivityIndicator } from "./components/ActivityPanel.js";
import { Banners } from "./components/Banners.js";
import { DropTarget } from "./components/DropTarget.js";
import { IconChat, IconCube, IconDatabase, IconGear, IconSliders } from "./components/icons.js";
import { useLang, useResolvedTheme, useT } from "./hooks.js";
import { useChat } from "./stores/chat.js";
import { displayTitle, useConversations } from "./stores/conversations.js";
import { useModels } from "./stores/models.js";
import { useUi, type View } from "./stores/ui.js";
import { ChatView } from "./views/ChatView.js";
import { DatasetsView } from "./views/DatasetsView.js";
import { FinetuneView } from "./views/FinetuneView.js";
import { ModelsView } from "./views/ModelsView.js";
import { SettingsView } from "./views/SettingsView.js";

function Rail() {
  const t = useT();
  const view = useUi((s) => s.view);
  const state = useModels((s) => s.status.state);
  const items: [View, string, () => ReactElement][] = [
    ["chat", t("nav.chat"), IconChat],
    ["models", t("nav.models"), IconCube],
    ["datasets", t("nav.datasets"), IconDatabase],
    ["finetune", t("finetune.nav"), IconSliders],
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
      <ActivityIndicator />
    </nav>
  );
}

export function App() {
  const t = useT();
  const lang = useLang();
  const theme = useResolvedTheme();
  const view = useUi((s) => s.view);
  const convTitle = useChat((s) => s.conversation?.title);

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

  return (
    <div className="app">
      <Rail />
      <main className="main">
        <Banners />
        <div className="view">{view === "chat" ? <ChatView /> : view === "models" ? <ModelsView /> : view === "datasets" ? <DatasetsView /> : view === "finetune" ? <FinetuneView /> : <SettingsView />}</div>
      </main>
      <DropTarget />
    </div>
  );
}
