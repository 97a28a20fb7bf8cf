// The message box: Enter sends, Shift+Enter is a new line (IME composition never sends); Stop while streaming.
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { useT } from "../hooks.js";
import { isStreaming, useChat } from "../stores/chat.js";
import { useModels } from "../stores/models.js";
import { IconSend, IconStop } from "./icons.js";

export function Composer() {
  const t = useT();
  const [text, setText] = useState("");
  const ref = useRef<HTMLTextAreaElement>(null);
  const streaming = useChat((s) => isStreaming(s.messages));
  const sending = useChat((s) => s.sending);
  const stopping = useChat((s) => s.stopping);
  const conversationId = useChat((s) => s.conversation?.id);
  const remote = useChat((s) => !!s.conversation?.endpointId);
  const hasModel = useModels((s) => s.status.model !== null || s.status.state === "loading" || s.status.state === "crashed") || remote;

  useEffect(() => {
    ref.current?.focus();
  }, [conversationId]);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);

  const send = async () => {
    const content = text;
    if (!content.trim() || streaming || sending) return;
    setText("");
    const ok = await useChat.getState().send(content);
    if (!ok) setText((cur) => (cur ? cur : content));
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape" && streaming) {
      e.preventDefault();
      void useChat.getState().stop();
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      void send();
    }
  };
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
    >
      <div className="composer-box">
        <textarea
          ref={ref}
          aria-label={t("chat.message")}
          placeholder={hasModel ? t("chat.placeholder") : t("chat.placeholderNoModel")}
          rows={1}
          value={text}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={onKey}
        />
        {streaming ? (
          <button type="button" className="round stop" aria-label={t("chat.stop")} title={t("chat.stop")} disabled={stopping} onClick={() => void useChat.getState().stop()}>
            <IconStop />
          </button>
        ) : (
          <button type="submit" className="round send" aria-label={t("chat.send")} title={t("chat.send")} disabled={!text.trim() || sending}>
            <IconSend />
          </button>
        )}
      </div>
      <p className="composer-hint" aria-hidden="true">
        {t("chat.hint")}
      </p>
    </form>
  );
}
