// Finetune: the runs on the left (New run on top, tick two to compare), the new-run form or the open run in the
// middle. A .jsonl dropped while this view is open goes through the Datasets import (its report, with every bad
// line) shown here, and the new dataset is selected in the form (stores/finetune.ts, importForFinetune).
import { useEffect } from "react";
import { ImportDialog } from "../components/ImportDialog.js";
import { NewRunForm } from "../components/finetune/NewRunForm.js";
import { RunDetail } from "../components/finetune/RunDetail.js";
import { CompareCard, RunList } from "../components/finetune/RunList.js";
import { useT } from "../hooks.js";
import { useDatasets } from "../stores/datasets.js";
import { useFinetune } from "../stores/finetune.js";

export function FinetuneView() {
  const t = useT();
  const openId = useFinetune((s) => s.openId);
  const run = useFinetune((s) => s.runs.find((r) => r.id === s.openId) ?? null);
  useEffect(() => {
    void useFinetune.getState().refresh();
    if (!useDatasets.getState().loaded) void useDatasets.getState().refresh();
  }, []);
  return (
    <section className="datasets-layout finetune-layout" aria-label={t("finetune.title")}>
      <RunList />
      <div className="page finetune-main">
        <div className="page-inner finetune-inner">
          <header className="page-head">
            <h1>{t("finetune.title")}</h1>
            <p className="muted">{t("finetune.subtitle")}</p>
          </header>
          <CompareCard />
          {openId && run ? <RunDetail run={run} /> : <NewRunForm />}
        </div>
      </div>
      <ImportDialog />
    </section>
  );
}
