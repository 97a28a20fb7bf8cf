// The renderer's strings: English and Chinese have the same keys and the same {placeholders}; locale detection.
import { describe, expect, it } from "vitest";
import { en } from "../../renderer/src/i18n/en.js";
import { zh } from "../../renderer/src/i18n/zh.js";
import { langFromLocale, translate } from "../../renderer/src/i18n/index.js";

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe("i18n", () => {
  it("en and zh have identical keys", () => {
    expect(Object.keys(zh).sort()).toEqual(Object.keys(en).sort());
  });

  it("every translation keeps the English placeholders and is not empty", () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(zh[key].trim().length, key).toBeGreaterThan(0);
      expect(placeholders(zh[key]), key).toEqual(placeholders(en[key]));
    }
  });

  it("the accessible names the end-to-end test and screen readers use", () => {
    expect([en["chat.message"], en["chat.send"], en["chat.stop"], en["chat.regenerate"], en["sidebar.newChat"], en["chat.messages"]]).toEqual([
      "Message",
      "Send",
      "Stop",
      "Regenerate",
      "New chat",
      "Messages",
    ]);
    expect([en["chat.edit"], en["chat.copy"], en["chat.saveAndResend"], en["chat.settings"]]).toEqual(["Edit", "Copy", "Save and resend", "Conversation settings"]);
    expect([zh["chat.message"], zh["chat.send"], zh["sidebar.newChat"], zh["nav.settings"], zh["nav.chat"]]).toEqual(["消息", "发送", "新对话", "设置", "对话"]);
  });

  it("picks Chinese for any zh locale and English otherwise", () => {
    expect(langFromLocale("zh-CN")).toBe("zh");
    expect(langFromLocale("zh_TW")).toBe("zh");
    expect(langFromLocale("zh")).toBe("zh");
    expect(langFromLocale("en-US")).toBe("en");
    expect(langFromLocale("de")).toBe("en");
    expect(langFromLocale(undefined)).toBe("en");
  });

  it("fills placeholders and leaves unknown ones", () => {
    expect(translate("en", "chat.context", { used: 10, total: 256 })).toBe("Context 10 / 256");
    expect(translate("zh", "chat.tokens", { n: 3 })).toBe("3 个词元");
    expect(translate("en", "chat.tokens")).toBe("{n} tokens");
  });
});
