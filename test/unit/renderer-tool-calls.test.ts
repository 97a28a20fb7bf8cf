// A reply with tool calls as the message list renders it (react-dom/server, no browser): the text around a call stays
// Markdown, each <tool_call> block becomes a collapsed <details> with the function's name and its arguments
// pretty-printed, and a call still being written shows what has arrived.
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { ReplyBody } from "../../renderer/src/components/ToolCallBlock.js";

describe("tool calls in a reply", () => {
  it("renders each call as a collapsible block between Markdown", () => {
    const text = 'Let me **check**.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\nDone.';
    const html = renderToStaticMarkup(createElement(ReplyBody, { text }));
    expect(html).toContain("<strong>check</strong>");
    expect(html).toMatch(/<details class="tool-call"><summary>Tool call: get_weather<\/summary><pre><code>\{\n {2}&quot;city&quot;: &quot;Paris&quot;\n\}<\/code><\/pre><\/details>/);
    expect(html).toContain("Done.");
    expect(html).not.toContain("&lt;tool_call&gt;");
  });

  it("a call still streaming shows the raw arguments so far; a reply without calls is plain Markdown", () => {
    const html = renderToStaticMarkup(createElement(ReplyBody, { text: 'A\n<tool_call>\n{"name": "f", "argu', streaming: true }));
    expect(html).toContain("<summary>Tool call…</summary>");
    expect(html).toContain("{&quot;name&quot;: &quot;f&quot;, &quot;argu");
    const plain = renderToStaticMarkup(createElement(ReplyBody, { text: "just *text*" }));
    expect(plain).toContain("<p>just <em>text</em></p>");
    expect(plain).not.toContain("tool-call");
  });
});
