// Conversation list: New chat, search, inline rename, delete with confirmation.
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { ConversationSummary } from "../api/types.js";
import { useT } from "../hooks.js";
import { displayTitle, useConversations } from "../stores/conversations.js";
import { IconEdit, IconPlus, IconSearch, IconTrash } from "./icons.js";

function Row({ c, current }: { c: ConversationSummary; current: boolean }) {
  const t = useT();
  const { select, rename, remove } = useConversations.getState();
  const [editing, setEditing] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const [title, setTitle] = useState(c.title);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (editing) input.current?.select();
  }, [editing]);

  const commit = () => {
    setEditing(false);
    if (title.trim() && title.trim() !== c.title) void rename(c.id, title);
    else setTitle(c.title);
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") commit();
    if (e.key === "Escape") {
      setTitle(c.title);
      setEditing(false);
    }
  };
  const name = displayTitle(c.title, t);

  if (confirming) {
    return (
      <li className="conv confirm" role="alertdialog" aria-label={t("sidebar.deleteConfirm", { title: name })}>
        <p>{t("sidebar.deleteConfirm", { title: name })}</p>
        <div className="row-actions">
          <button type="button" className="danger small" autoFocus onClick={() => void remove(c.id)}>
            {t("sidebar.confirmDelete")}
          </button>
          <button type="button" className="ghost small" onClick={() => setConfirming(false)}>
            {t("sidebar.cancel")}
          </button>
        </div>
      </li>
    );
  }
  return (
    <li className={`conv${current ? " current" : ""}`}>
      {editing ? (
        <input
          ref={input}
          className="rename"
          aria-label={t("sidebar.renameField")}
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
          onBlur={commit}
          onKeyDown={onKey}
        />
      ) : (
        <button type="button" className="conv-open" aria-current={current ? "true" : undefined} onClick={() => void select(c.id)} onDoubleClick={() => setEditing(true)} title={c.snippet || name}>
          <span className="conv-title">{name}</span>
          {c.snippet && <span className="conv-snippet">{c.snippet}</span>}
        </button>
      )}
      {!editing && (
        <div className="conv-actions">
          <button type="button" className="ghost icon" aria-label={`${t("sidebar.rename")}: ${name}`} title={t("sidebar.rename")} onClick={() => { setTitle(c.title); setEditing(true); }}>
            <IconEdit />
          </button>
          <button type="button" className="ghost icon" aria-label={`${t("sidebar.delete")}: ${name}`} title={t("sidebar.delete")} onClick={() => setConfirming(true)}>
            <IconTrash />
          </button>
        </div>
      )}
    </li>
  );
}

/** Today's conversations first, then the rest (the list comes newest first). */
function groups(list: ConversationSummary[]): ["sidebar.today" | "sidebar.earlier", ConversationSummary[]][] {
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const today = list.filter((c) => c.updatedAt >= midnight.getTime());
  const earlier = list.filter((c) => c.updatedAt < midnight.getTime());
  const out: ["sidebar.today" | "sidebar.earlier", ConversationSummary[]][] = [];
  if (today.length) out.push(["sidebar.today", today]);
  if (earlier.length) out.push(["sidebar.earlier", earlier]);
  return out;
}

export function Sidebar() {
  const t = useT();
  const list = useConversations((s) => s.list);
  const search = useConversations((s) => s.search);
  const currentId = useConversations((s) => s.currentId);
  const loaded = useConversations((s) => s.loaded);
  const { create, setSearch } = useConversations.getState();
  return (
    <aside className="sidebar">
      <button type="button" className="primary new-chat" aria-label={t("sidebar.newChat")} title={`${t("sidebar.newChat")} (Ctrl+Shift+O)`} onClick={() => void create()}>
        <IconPlus />
        <span>{t("sidebar.newChat")}</span>
      </button>
      <label className="search">
        <IconSearch />
        <input type="search" aria-label={t("sidebar.search")} placeholder={t("sidebar.search")} value={search} onChange={(e) => setSearch(e.target.value)} />
      </label>
      <nav aria-label={t("sidebar.conversations")} className="conv-nav">
        {groups(list).map(([label, items]) => (
          <div key={label} className="conv-group">
            <h2 className="conv-group-title">{t(label)}</h2>
            <ul className="conv-list">
              {items.map((c) => (
                <Row key={c.id} c={c} current={c.id === currentId} />
              ))}
            </ul>
          </div>
        ))}
        {loaded && list.length === 0 && <p className="muted empty">{search.trim() ? t("sidebar.noResults", { q: search.trim() }) : t("sidebar.empty")}</p>}
      </nav>
    </aside>
  );
}
