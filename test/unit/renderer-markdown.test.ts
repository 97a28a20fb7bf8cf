// Markdown as the message list renders it (react-dom/server, no browser): GFM tables, highlighted code blocks with a
// Copy button and a language label, and the streaming path that splits at blank lines outside code fences.
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { Markdown, splitBlocks } from "../../renderer/src/components/Markdown.js";

const md = "Intro with `code`.\n\n```python\ndef f(x):\n    return x + 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>alert(1)</script>";

describe("Markdown", () => {
  it("renders highlighted code with a Copy button, GFM tables, and no raw HTML", () => {
    const html = renderToStaticMarkup(createElement(Markdown, { text: md }));
    expect(html).toContain('class="code-block"');
    expect(html).toContain('<span class="code-lang">python</span>');
    expect(html).toMatch(/<button[^>]*aria-label="Copy"/);
    expect(html).toMatch(/class="hljs-keyword">def</);
    expect(html).toContain("<table>");
    expect(html).not.toContain("<script>");
  });

  it("streaming renders the same content block by block", () => {
    const whole = renderToStaticMarkup(createElement(Markdown, { text: md }));
    const live = renderToStaticMarkup(createElement(Markdown, { text: md, streaming: true }));
    expect(live.replace(/\s+/g, "")).toBe(whole.replace(/\s+/g, ""));
  });

  it("splits at blank lines, never inside a code fence", () => {
    expect(splitBlocks("a\n\nb")).toEqual(["a", "b"]);
    expect(splitBlocks("```\nx\n\ny\n```\n\nz")).toEqual(["```\nx\n\ny\n```", "z"]);
    expect(splitBlocks("~~~\n```\n\n~~~\n\nend")).toEqual(["~~~\n```\n\n~~~", "end"]);
    expect(splitBlocks("open fence\n```js\nlet a\n\n")).toEqual(["open fence\n```js\nlet a\n\n"]);
    expect(splitBlocks("")).toEqual([""]);
  });
});
