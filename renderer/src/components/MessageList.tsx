// The live region of messages; it follows the stream while the user is at the bottom.
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { useT } from "../hooks.js";
import { isStreaming, messageRows, useChat } from "../stores/chat.js";
import { folderName, useModels } from "../stores/models.js";
import { useUi } from "../stores/ui.js";
import { MessageItem } from "./MessageItem.js";
import { IconDown } from "./icons.js";

export function MessageList() {
  const t = useT();
  const messages = useChat((s) => s.messages);
  const liveTokens = useChat((s) => s.liveTokens);
  const sending = useChat((s) => s.sending);
  const conversationId = useChat((s) => s.conversation?.id);
  const adapterDir = useChat((s) => s.conversation?.adapterDir ?? null);
  const model = useModels((s) => s.status.model);
  const ref = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [away, setAway] = useState(false);
  const busy = sending || isStreaming(messages);
  const lastReply = messages.at(-1)?.role === "assistant" ? messages.at(-1)!.id : null;

  useLayoutEffect(() => {
    const el = ref.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [messages]);
  useEffect(() => {
    stick.current = true;
    setAway(false);
  }, [conversationId]);
  const toBottom = () => {
    const el = ref.current;
    if (!el) return;
    stick.current = true;
    setAway(false);
    el.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
  };

  return (
    <div className="messages-wrap">
      <div
        ref={ref}
        className="messages"
        role="log"
        aria-live="polite"
        aria-label={t("chat.messages")}
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          if (away === stick.current) setAway(!stick.current);
        }}
      >
        <div className="messages-inner">
          {messages.length === 0 && (
            <div className="welcome">
              <h2>{t("chat.welcomeTitle")}</h2>
              <p className="muted">{model ? t("chat.welcomeReady", { model: model.name }) : t("chat.welcomeNoModel")}</p>
              {!model && (
                <button type="button" className="secondary" onClick={() => useUi.getState().setView("models")}>
                  {t("chat.loadModel")}
                </button>
              )}
            </div>
          )}
          {messageRows(messages).map((row) =>
            row.kind === "one" ? (
              <MessageItem key={row.message.id} message={row.message} isLastReply={row.message.id === lastReply} busy={busy} liveTokens={liveTokens[row.message.id]} />
            ) : (
              <div key={row.base.id} className="compare-pair" role="group" aria-label={t("chat.compare")}>
                <MessageItem message={row.base} isLastReply={false} busy={busy} liveTokens={liveTokens[row.base.id]} label={t("chat.compareBase")} />
                <MessageItem message={row.adapter} isLastReply={row.adapter.id === lastReply} busy={busy} liveTokens={liveTokens[row.adapter.id]}
                  label={t("chat.compareAdapter", { name: adapterDir ? folderName(adapterDir) : t("chat.assistant") })} />
              </div>
            ),
          )}
        </div>
      </div>
      {away && (
        <button type="button" className="to-bottom" aria-label={t("chat.toBottom")} title={t("chat.toBottom")} onClick={toBottom}>
          <IconDown />
        </button>
      )}
    </div>
  );
}
