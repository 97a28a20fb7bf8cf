// Markdown with GitHub extensions and highlighted code; each code block gets a "Copy" button.
import { memo, type ReactNode } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import rehypeHighlight from "rehype-highlight";
import remarkGfm from "remark-gfm";
import { useCopied, useT } from "../hooks.js";
import { IconCheck, IconCopy } from "./icons.js";

interface HastNode {
  type: string;
  value?: string;
  tagName?: string;
  properties?: { className?: unknown };
  children?: HastNode[];
}

function textOf(node: HastNode | undefined): string {
  if (!node) return "";
  if (node.type === "text") return node.value ?? "";
  return (node.children ?? []).map(textOf).join("");
}

function languageOf(node: HastNode | undefined): string | null {
  const code = node?.children?.find((c) => c.tagName === "code");
  const cls = code?.properties?.className;
  const list = Array.isArray(cls) ? cls.map(String) : typeof cls === "string" ? cls.split(" ") : [];
  const lang = list.find((c) => c.startsWith("language-"));
  return lang ? lang.slice("language-".length) : null;
}

function CodeBlock({ node, children }: { node?: HastNode; children?: ReactNode }) {
  const t = useT();
  const [copied, copy] = useCopied();
  const lang = languageOf(node);
  return (
    <div className="code-block">
      <div className="code-head">
        <span className="code-lang">{lang ?? "text"}</span>
        <button type="button" className="ghost small" aria-label={t("chat.copy")} onClick={() => copy(textOf(node).replace(/\n$/, ""))}>
          {copied ? <IconCheck /> : <IconCopy />}
          <span>{copied ? t("chat.copied") : t("chat.copy")}</span>
        </button>
      </div>
      <pre>{children}</pre>
    </div>
  );
}

const components: Components = {
  pre: ({ node, children }) => <CodeBlock node={node as unknown as HastNode}>{children}</CodeBlock>,
  a: ({ href, children }) => (
    <a href={href} target="_blank" rel="noreferrer noopener">
      {children}
    </a>
  ),
};

/**
 * Splits Markdown at blank lines outside code fences. While a reply streams, each finished block is rendered once
 * (memoised) and only the growing last block re-renders, so a long reply costs the same per update as a short one.
 */
export function splitBlocks(text: string): string[] {
  const blocks: string[] = [];
  let cur: string[] = [];
  let fence: string | null = null;
  for (const line of text.split("\n")) {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (m) {
      if (!fence) fence = m[1][0];
      else if (m[1][0] === fence) fence = null;
    }
    if (!fence && line.trim() === "" && cur.some((l) => l.trim() !== "")) {
      blocks.push(cur.join("\n"));
      cur = [];
      continue;
    }
    cur.push(line);
  }
  if (cur.length) blocks.push(cur.join("\n"));
  return blocks;
}

const Block = memo(function Block({ text }: { text: string }) {
  return (
    <ReactMarkdown remarkPlugins={[remarkGfm]} rehypePlugins={[[rehypeHighlight, { detect: false }]]} components={components}>
      {text}
    </ReactMarkdown>
  );
});

/** Past this size the still-growing last block shows as plain text until it is complete (Markdown parsing is O(n)). */
const LIVE_MARKDOWN_LIMIT = 6000;

export const Markdown = memo(function Markdown({ text, streaming = false }: { text: string; streaming?: boolean }) {
  if (!streaming) {
    return (
      <div className="markdown">
        <Block text={text} />
      </div>
    );
  }
  const blocks = splitBlocks(text);
  const last = blocks.length - 1;
  return (
    <div className="markdown">
      {blocks.map((b, i) =>
        i === last && b.length > LIVE_MARKDOWN_LIMIT ? (
          <p key={i} className="plain">
            {b}
          </p>
        ) : (
          <Block key={i} text={b} />
        ),
      )}
    </div>
  );
});
