// electron/server/auth.ts on its own: the token's size and alphabet, the rules for a chosen token, the comparison,
// and which cookie counts (test/native/server.test.ts drives the same through real HTTP and WebSocket requests).
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { checkToken, cookie, newToken, TokenAuth } from "../../electron/server/auth.js";

const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe("serve tokens", () => {
  it("a new token is 256 random bits, URL-safe, different each time", () => {
    const tokens = new Set(Array.from({ length: 64 }, () => newToken()));
    expect(tokens.size).toBe(64);
    for (const t of tokens) {
      expect(t).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(t, "base64url")).toHaveLength(32);
      expect(checkToken(t, "generated")).toBe(t);
    }
  });

  it("a chosen token needs 16 to 512 URL-safe characters; the error names where it came from", () => {
    expect(checkToken("abcdefghijklmnop", "--token")).toBe("abcdefghijklmnop");
    expect(checkToken("A.b_c~d-0123456789", "--token")).toBe("A.b_c~d-0123456789");
    expect(() => checkToken("abcdefghijklmno", "--token")).toThrow("--token: a token needs at least 16 characters, got 15");
    expect(() => checkToken("x".repeat(513), "MOE_STUDIO_TOKEN")).toThrow("MOE_STUDIO_TOKEN: a token has at most 512 characters, got 513");
    for (const bad of ["abcdefghijklmnop;", "abcdefgh ijklmnop", "abcdefghijklmnop=", "abcdefghijklmnöp", "abcdefghijklmnop\n"]) {
      expect(() => checkToken(bad, "--token"), JSON.stringify(bad)).toThrow(/only letters, digits and \. _ ~ -/);
    }
  });

  it("matches only the exact token", () => {
    const auth = new TokenAuth("the-right-token-0123456789", 8377);
    expect(auth.matches("the-right-token-0123456789")).toBe(true);
    for (const wrong of ["the-right-token-012345678", "the-right-token-01234567890", "THE-RIGHT-TOKEN-0123456789", "", null, undefined, "x".repeat(10_000)]) {
      expect(auth.matches(wrong), String(wrong).slice(0, 40)).toBe(false);
    }
  });

  it("reads its own cookie (named with the port), an Authorization header or ?token=", () => {
    const auth = new TokenAuth("the-right-token-0123456789", 8377);
    const none = new URLSearchParams();
    expect(auth.cookieName).toBe("moe-studio-token-8377");
    expect(auth.allows(request({ cookie: "a=1; moe-studio-token-8377=the-right-token-0123456789; b=2" }), none)).toBe(true);
    expect(auth.allows(request({ authorization: "Bearer the-right-token-0123456789" }), none)).toBe(true);
    expect(auth.allows(request({}), new URLSearchParams("token=the-right-token-0123456789"))).toBe(true);
    // another server's cookie, a look-alike name, or nothing
    expect(auth.allows(request({ cookie: "moe-studio-token-8378=the-right-token-0123456789" }), none)).toBe(false);
    expect(auth.allows(request({ cookie: "xmoe-studio-token-8377=the-right-token-0123456789" }), none)).toBe(false);
    expect(auth.allows(request({ authorization: "Basic the-right-token-0123456789" }), none)).toBe(false);
    expect(auth.allows(request({}), none)).toBe(false);
    expect(auth.setCookie()).toBe("moe-studio-token-8377=the-right-token-0123456789; Path=/; HttpOnly; SameSite=Strict");
  });

  it("a Cookie header's first value of a name is the one", () => {
    expect(cookie("a=1; b=2; a=3", "a")).toBe("1");
    expect(cookie("a=x=y", "a")).toBe("x=y");
    expect(cookie("novalue; a=", "a")).toBe("");
    expect(cookie(undefined, "a")).toBeNull();
  });
});
