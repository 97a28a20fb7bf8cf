// Top-of-window banners: connection lost (while disconnected) and dismissible errors.
import { useT } from "../hooks.js";
import { useUi } from "../stores/ui.js";
import { IconAlert, IconX } from "./icons.js";

export function Banners() {
  const t = useT();
  const banners = useUi((s) => s.banners);
  const connection = useUi((s) => s.connection);
  const everConnected = useUi((s) => s.everConnected);
  const dismiss = useUi((s) => s.dismiss);
  const disconnected = connection === "closed" || (connection === "connecting" && everConnected);
  return (
    <div className="banners">
      {disconnected && (
        <div className="banner warn" role="status">
          <span className="spinner" aria-hidden="true" />
          <span>{t("banner.disconnected")}</span>
        </div>
      )}
      {banners.map((b) => (
        <div key={b.id} className={`banner ${b.kind}`} role="alert">
          <IconAlert />
          <span className="banner-text">
            {b.key ? t(b.key, b.vars) : b.text}
            {b.detail && <span className="error-detail">{b.detail}</span>}
          </span>
          <button type="button" className="ghost icon" aria-label={t("banner.dismiss")} title={t("banner.dismiss")} onClick={() => dismiss(b.id)}>
            <IconX />
          </button>
        </div>
      ))}
    </div>
  );
}
