// A tool call the model wrote in its reply (<tool_call>{"name", "arguments"}</tool_call>, Qwen's and Hermes' form),
// shown as a collapsible block: the function's name in the summary, its arguments pretty-printed inside. The rest
// of the reply stays Markdown. The split is the API server's own parser (electron/server/openai/tool-parse.ts).
import { hermesSegments, type ReplySegment } from "../../../electron/server/openai/tool-parse.js";
import { useT } from "../hooks.js";
import { Markdown } from "./Markdown.js";

function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

export function ToolCallBlock({ segment }: { segment: Extract<ReplySegment, { kind: "call" }> }) {
  const t = useT();
  const name = segment.call?.name;
  return (
    <details className="tool-call">
      <summary>
        {name ? t("chat.toolCall", { name }) : t("chat.toolCallPartial")}
      </summary>
      <pre>
        <code>{segment.call ? pretty(segment.call.arguments) : segment.raw}</code>
      </pre>
    </details>
  );
}

/** A reply: Markdown, with each tool call the model wrote as a collapsible block. */
export function ReplyBody({ text, streaming = false }: { text: string; streaming?: boolean }) {
  const parts = hermesSegments(text);
  if (parts.every((p) => p.kind === "text")) return <Markdown text={text} streaming={streaming} />;
  return (
    <>
      {parts.map((p, i) =>
        p.kind === "text" ? <Markdown key={i} text={p.text} streaming={streaming && i === parts.length - 1} /> : <ToolCallBlock key={i} segment={p} />,
      )}
    </>
  );
}
