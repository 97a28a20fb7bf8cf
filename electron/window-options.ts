// The window's security settings as plain data, so tests can check them without Electron: the BrowserWindow's
// webPreferences, the Content-Security-Policy every app file is served with, and which URLs the window may show.
// main.ts (Electron) and the `serve` server (a browser) use the same CSP.

/** The scheme main.ts registers to serve renderer/dist inside Electron (app://moe-studio/index.html). */
export const APP_SCHEME = "app";
export const APP_HOST = "moe-studio";
export const APP_ORIGIN = `${APP_SCHEME}://${APP_HOST}`;
export const APP_START_URL = `${APP_ORIGIN}/index.html`;

/**
 * The CSP of the app's pages. Everything comes from the app's own origin: no inline or eval'd scripts, no plugins,
 * no <base> rewriting, no framing. Styles: the renderer's CSS is a bundled file and React sets `style` through the
 * CSSOM (which CSP does not restrict), so 'unsafe-inline' is not needed. `connectSrc` adds origins the page may
 * talk to besides its own (the serve mode's WebSocket URL, for browsers that do not match ws: against 'self').
 */
export function contentSecurityPolicy(opts: { connectSrc?: string[] } = {}): string {
  const directives: [string, string[]][] = [
    ["default-src", ["'self'"]],
    ["script-src", ["'self'"]],
    ["style-src", ["'self'"]],
    ["connect-src", ["'self'", ...(opts.connectSrc ?? [])]],
    ["img-src", ["'self'", "data:"]],
    ["font-src", ["'self'"]],
    ["object-src", ["'none'"]],
    ["base-uri", ["'none'"]],
    ["form-action", ["'none'"]],
    ["frame-ancestors", ["'none'"]],
  ];
  return directives.map(([name, values]) => `${name} ${values.join(" ")}`).join("; ");
}

/** Headers every response of an app file carries (Electron's app:// handler and the serve mode alike). */
export function securityHeaders(opts: { connectSrc?: string[] } = {}): Record<string, string> {
  return {
    "Content-Security-Policy": contentSecurityPolicy(opts),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
  };
}

/** BrowserWindow webPreferences: the renderer is a sandboxed web page that sees only the preload's `moeApi`. */
export function webPreferences(preloadPath: string) {
  return {
    preload: preloadPath,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    navigateOnDragDrop: false, // a folder dropped on the window goes to the app (models view), not to navigation
    spellcheck: false,
    safeDialogs: true,
  } as const;
}

/** The BrowserWindow's options (no Electron types here: main.ts passes this object to `new BrowserWindow`). */
export function windowOptions(preloadPath: string, opts: { dark?: boolean } = {}) {
  return {
    width: 1200,
    height: 800,
    minWidth: 720,
    minHeight: 480,
    title: "MoE Studio",
    show: false, // shown on ready-to-show: no white flash
    backgroundColor: opts.dark ? "#111318" : "#ffffff",
    autoHideMenuBar: true,
    webPreferences: webPreferences(preloadPath),
  };
}

/**
 * Whether the window may load this URL. Only the app's own pages: any other navigation (a link in a model's
 * Markdown reply, a dropped file, a redirect) is refused; links to http(s) are opened in the system browser instead
 * (see `externalUrl`).
 */
export function isAppUrl(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return u.protocol === `${APP_SCHEME}:` && u.host === APP_HOST;
}

/** An http(s) URL the user clicked that main.ts may hand to the OS browser; null for anything else (file:, javascript:, ...). */
export function externalUrl(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
}
