// Chat: conversations on the left, the conversation in the middle, its settings on the right (toggle).
import { useEffect } from "react";
import { Composer } from "../components/Composer.js";
import { ConversationPanel } from "../components/ConversationPanel.js";
import { IconSliders } from "../components/icons.js";
import { MessageList } from "../components/MessageList.js";
import { Sidebar } from "../components/Sidebar.js";
import { useT } from "../hooks.js";
import { contextMeter, useChat } from "../stores/chat.js";
import { folderName, useModels } from "../stores/models.js";
import { displayTitle } from "../stores/conversations.js";
import { useUi } from "../stores/ui.js";
import { endpointOf, useEndpoints } from "../stores/endpoints.js";

function ModelChip() {
  const t = useT();
  const status = useModels((s) => s.status);
  const endpointId = useChat((s) => s.conversation?.endpointId ?? null);
  const endpoint = endpointOf(endpointId, useEndpoints((s) => s.list));
  if (endpointId) {
    // answered by a remote: its name, and what it serves, instead of the local model
    return (
      <span className="chip remote-chip" data-testid="endpoint-chip" title={endpoint ? `${endpoint.model} · ${endpoint.baseUrl}` : ""}>
        <span className="dot" aria-hidden="true" />
        <span>{endpoint ? t("chat.remoteLabel", { name: endpoint.name }) : t("chat.remoteGone")}</span>
      </span>
    );
  }
  const label = status.model ? status.model.name : status.state === "loading" ? t("models.loading", { name: folderName(status.dir ?? "") }) : t("chat.noModel");
  return (
    <button type="button" className={`chip state-${status.state}`} onClick={() => useUi.getState().setView("models")} title={status.model?.dir ?? ""}>
      <span className="dot" aria-hidden="true" />
      <span>{label}</span>
    </button>
  );
}

/** The adapter a conversation runs with ("adapter: checkpoint-200") and the Compare with base switch. */
function AdapterControls() {
  const t = useT();
  const adapterDir = useChat((s) => s.conversation?.adapterDir ?? null);
  const compareMode = useChat((s) => s.compareMode);
  if (!adapterDir) return null;
  return (
    <>
      <span className="chip adapter-chip" data-testid="adapter-chip" title={t("chat.adapterTitle", { dir: adapterDir })}>
        {t("chat.adapterLabel", { name: folderName(adapterDir) })}
      </span>
      <button
        type="button"
        className={`ghost small${compareMode ? " active" : ""}`}
        aria-pressed={compareMode}
        title={t("chat.compareTitle")}
        onClick={() => useChat.getState().setCompareMode(!compareMode)}
      >
        {t("chat.compare")}
      </button>
    </>
  );
}

function ContextMeter() {
  const t = useT();
  const messages = useChat((s) => s.messages);
  const model = useModels((s) => s.status.model);
  const remote = useChat((s) => !!s.conversation?.endpointId);
  // a remote does not say its context: no meter (the replies' stats say 0)
  const meter = remote ? null : contextMeter(messages, model);
  if (!meter) return null;
  const { used, total } = meter;
  const pct = Math.min(100, (used / total) * 100);
  return (
    <div className="context" title={t("chat.contextTitle")}>
      <span>{t("chat.context", { used: used.toLocaleString(), total: total.toLocaleString() })}</span>
      <span className="meter" aria-hidden="true">
        <span style={{ width: `${pct}%` }} />
      </span>
    </div>
  );
}

export function ChatView() {
  const t = useT();
  useEffect(() => {
    // the header names a remote conversation's endpoint: have the list (the Models view keeps it fresh)
    if (useEndpoints.getState().list === null) void useEndpoints.getState().refresh();
  }, []);
  const conversation = useChat((s) => s.conversation);
  const panelOpen = useUi((s) => s.panelOpen);
  return (
    <div className={`chat-layout${panelOpen && conversation ? " with-panel" : ""}`}>
      <Sidebar />
      <section className="chat-main">
        <header className="chat-header">
          <h1 className="chat-title">{conversation ? displayTitle(conversation.title, t) : t("app.name")}</h1>
          <div className="header-right">
            <AdapterControls />
            <ContextMeter />
            <ModelChip />
            {conversation && (
              <button
                type="button"
                className={`ghost icon${panelOpen ? " active" : ""}`}
                aria-label={t("chat.settings")}
                aria-expanded={panelOpen}
                title={t("chat.settings")}
                onClick={() => useUi.getState().togglePanel()}
              >
                <IconSliders />
              </button>
            )}
          </div>
        </header>
        <MessageList />
        <Composer />
      </section>
      {panelOpen && conversation && <ConversationPanel />}
    </div>
  );
}
