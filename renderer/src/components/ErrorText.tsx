// A server error in the user's language (describeError), with the server's own words as a small detail line.
import { describeError } from "../errors.js";
import { useT } from "../hooks.js";
import { IconAlert } from "./icons.js";

export function ErrorText({ error, code, prefix }: { error: string; code?: string; prefix?: boolean }) {
  const t = useT();
  const d = describeError(code, error);
  return (
    <span className="error-text">
      {prefix ? `${t("chat.errorPrefix")}: ` : ""}
      {t(d.key, d.vars)}
      {d.detail && <span className="error-detail">{d.detail}</span>}
    </span>
  );
}

/** A failed call's error as a form keeps it: the server's message and its code (for describeError). */
export interface CallError {
  message: string;
  code?: string;
}

export function callError(e: unknown): CallError {
  const err = e as { message?: string; code?: string } | null;
  return { message: err?.message ?? String(e), ...(err?.code ? { code: err.code } : {}) };
}

/** A form's error box: the icon and the error in the user's language. */
export function ErrorAlert({ error }: { error: CallError }) {
  return (
    <div className="open-error" role="alert">
      <IconAlert />
      <div className="open-error-text"><ErrorText error={error.message} {...(error.code ? { code: error.code } : {})} /></div>
    </div>
  );
}
