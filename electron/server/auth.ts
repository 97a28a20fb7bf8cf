// Who may use `moe-studio serve`: whoever holds its token, as in Jupyter. The server prints its URL once with
// ?token=...; opening it trades the token for an HttpOnly, SameSite=Strict cookie and redirects to the same URL
// without the token (so it is not left in the address bar or history). Every other request, the WebSocket API
// included, must carry the cookie, or the token as `Authorization: Bearer <token>` or ?token= (scripts).
//
// Binding to 127.0.0.1 and the Origin/Host checks keep other sites out; the token keeps out other local processes
// and users, which can reach 127.0.0.1 too and can send any Origin header they like.
//
// Cookies are not scoped by port, so the cookie's name carries the port: two servers on one machine do not
// overwrite each other's cookie (and each accepts only its own).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/** The environment variable a script sets the token with (`--token` wins). */
export const TOKEN_ENV = "MOE_STUDIO_TOKEN";
/** The query parameter of the printed URL. */
export const TOKEN_PARAM = "token";

const MIN_TOKEN_CHARS = 16;
const MAX_TOKEN_CHARS = 512;
/** Characters that need no escaping in a URL query or a cookie value. */
const TOKEN_CHARS = /^[A-Za-z0-9._~-]+$/;

/** 256 random bits, URL-safe (43 characters). */
export function newToken(): string {
  return randomBytes(32).toString("base64url");
}

/** A token the user chose, or an Error naming `source` (e.g. "--token") and the rule it breaks. */
export function checkToken(token: string, source: string): string {
  if (token.length < MIN_TOKEN_CHARS) throw new Error(`${source}: a token needs at least ${MIN_TOKEN_CHARS} characters, got ${token.length}`);
  if (token.length > MAX_TOKEN_CHARS) throw new Error(`${source}: a token has at most ${MAX_TOKEN_CHARS} characters, got ${token.length}`);
  if (!TOKEN_CHARS.test(token)) throw new Error(`${source}: a token may contain only letters, digits and . _ ~ -`);
  return token;
}

export class TokenAuth {
  private readonly digest: Buffer;
  readonly cookieName: string;

  constructor(
    readonly token: string,
    port: number,
  ) {
    this.digest = sha256(token);
    this.cookieName = `moe-studio-token-${port}`;
  }

  /** Constant time in the candidate's content: both sides are hashed first, so lengths never differ either. */
  matches(candidate: string | undefined | null): boolean {
    if (typeof candidate !== "string" || candidate.length === 0 || candidate.length > MAX_TOKEN_CHARS) return false;
    return timingSafeEqual(sha256(candidate), this.digest);
  }

  /** Whether the request carries the token: in our cookie, an Authorization header, or the URL's ?token=. */
  allows(req: IncomingMessage, query: URLSearchParams): boolean {
    if (this.matches(cookie(req.headers.cookie, this.cookieName))) return true;
    const auth = /^(?:Bearer|Token)\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    if (auth && this.matches(auth[1])) return true;
    return this.matches(query.get(TOKEN_PARAM));
  }

  /** The Set-Cookie header of the token exchange: a session cookie the page's scripts cannot read. */
  setCookie(): string {
    return `${this.cookieName}=${this.token}; Path=/; HttpOnly; SameSite=Strict`;
  }
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** The value of cookie `name` in a Cookie header (the first: browsers send the most specific path first). */
export function cookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  let found: string | null = null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name && found === null) found = part.slice(eq + 1).trim();
  }
  return found;
}
