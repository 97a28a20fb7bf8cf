// One message: its body (Markdown, tool calls as blocks: ToolCallBlock.tsx; streaming as it arrives), stats under replies, Copy / Edit / Regenerate actions.
import { memo, useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { Message } from "../api/types.js";
import { useCopied, useT } from "../hooks.js";
import { useChat } from "../stores/chat.js";
import { ErrorText } from "./ErrorText.js";
import { ReplyBody } from "./ToolCallBlock.js";
import { IconAlert, IconCheck, IconCopy, IconEdit, IconRefresh } from "./icons.js";

function EditBox({ message, onDone }: { message: Message; onDone(): void }) {
  const t = useT();
  const [text, setText] = useState(message.content);
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  const save = async () => {
    if (!text.trim()) return;
    onDone();
    await useChat.getState().edit(message.id, text);
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape") onDone();
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void save();
    }
  };
  return (
    <div className="edit-box">
      <textarea ref={ref} aria-label={t("chat.edit")} value={text} rows={Math.min(12, text.split("\n").length + 1)} onChange={(e) => setText(e.target.value)} onKeyDown={onKey} />
      <div className="row-actions end">
        <button type="button" className="ghost small" onClick={onDone}>
          {t("chat.cancel")}
        </button>
        <button type="button" className="primary small" aria-label={t("chat.saveAndResend")} disabled={!text.trim()} onClick={() => void save()}>
          {t("chat.saveAndResend")}
        </button>
      </div>
    </div>
  );
}

interface Props {
  message: Message;
  isLastReply: boolean;
  busy: boolean;
  liveTokens?: number;
  /** Who wrote it, when not just "Assistant": a Compare with base side ("Base model", "With checkpoint-200"). */
  label?: string;
}

export const MessageItem = memo(function MessageItem({ message, isLastReply, busy, liveTokens, label }: Props) {
  const t = useT();
  const [copied, copy] = useCopied();
  const [editing, setEditing] = useState(false);
  const user = message.role === "user";
  const streaming = message.status === "streaming";
  const s = message.stats;
  return (
    <article className={`msg ${user ? "msg-user" : "msg-assistant"} status-${message.status}`} data-role={message.role}
      {...(message.compare ? { "data-compare": message.compare } : {})} aria-label={user ? t("chat.you") : (label ?? t("chat.assistant"))}>
      <div className="msg-role" aria-hidden="true" title={new Date(message.createdAt).toLocaleString()}>
        {user ? t("chat.you") : (label ?? t("chat.assistant"))}
      </div>
      {editing ? (
        <EditBox message={message} onDone={() => setEditing(false)} />
      ) : (
        <div className="msg-body">
          {user ? <p className="plain">{message.content}</p> : message.content ? <ReplyBody text={message.content} streaming={streaming} /> : streaming ? <span className="typing" aria-label={t("chat.thinking")}><i /><i /><i /></span> : null}
        </div>
      )}
      {message.status === "error" && message.error && (
        <div className="msg-error" role="note">
          <IconAlert />
          <ErrorText error={message.error} prefix />
        </div>
      )}
      {!editing && (
        <div className="msg-foot">
          {!user && (
            <span className="msg-stats">
              {streaming && liveTokens ? <span>{t("chat.tokens", { n: liveTokens })}</span> : null}
              {s && (
                <>
                  <span>{t("chat.tokens", { n: s.completionTokens })}</span>
                  <span>{t("chat.tokensPerSecond", { n: s.decodeTokensPerSecond.toFixed(1) })}</span>
                </>
              )}
              {message.status === "stopped" && <span className="tag">{t("chat.stopped")}</span>}
            </span>
          )}
          {!streaming && (
            <span className="msg-actions">
              <button type="button" className="ghost small" aria-label={t("chat.copy")} onClick={() => copy(message.content)}>
                {copied ? <IconCheck /> : <IconCopy />}
                <span className="label">{copied ? t("chat.copied") : t("chat.copy")}</span>
              </button>
              {user && (
                <button type="button" className="ghost small" aria-label={t("chat.edit")} disabled={busy} onClick={() => setEditing(true)}>
                  <IconEdit />
                  <span className="label">{t("chat.edit")}</span>
                </button>
              )}
              {isLastReply && (
                <button type="button" className="ghost small" aria-label={t("chat.regenerate")} disabled={busy} onClick={() => void useChat.getState().regenerate()}>
                  <IconRefresh />
                  <span className="label">{t("chat.regenerate")}</span>
                </button>
              )}
            </span>
          )}
        </div>
      )}
    </article>
  );
});
