// A server error in the user's language (describeError), with the server's own words as a small detail line.
import { describeError } from "../errors.js";
import { useT } from "../hooks.js";

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
