// The whole window is a drop target: a .jsonl/.json file becomes a dataset import, a folder (Electron, which knows
// its path) opens as a model, anything else gets a message saying what can be dropped. The listeners sit on
// `window`, not on a React element, so a drop anywhere — including on the document itself — is seen.
import { useEffect, useRef, useState } from "react";
import { api } from "../api/index.js";
import { useT } from "../hooks.js";
import { classifyDrop, useDatasets } from "../stores/datasets.js";
import { useFinetune } from "../stores/finetune.js";
import { useModels } from "../stores/models.js";
import { useUi } from "../stores/ui.js";
import { IconFolder, IconUpload } from "./icons.js";

function hasFiles(e: DragEvent): boolean {
  return Array.from(e.dataTransfer?.types ?? []).includes("Files");
}

function handleDrop(dt: DataTransfer): void {
  const file = dt.files[0];
  if (!file) return;
  const ui = useUi.getState();
  // webkitGetAsEntry tells a folder from a file on a real drop (null for a DataTransfer a script built)
  const entry = dt.items?.[0]?.webkitGetAsEntry?.() ?? null;
  const kind = classifyDrop(file.name, entry?.isDirectory ?? false);
  if (kind === "dataset" && ui.view === "finetune") {
    // on the Finetune view the import's report shows there, and the new dataset is selected for the run
    void useFinetune.getState().importForFinetune(file);
    return;
  }
  if (kind === "dataset") {
    ui.setView("datasets");
    void useDatasets.getState().importFile(file);
    return;
  }
  const path = api().pathForFile?.(file) ?? "";
  if (kind === "folder" || (!entry && path)) {
    // a model folder, as before datasets existed: Electron knows its path, a browser does not
    ui.setView("models");
    if (path) void useModels.getState().open(path);
    else ui.notify({ kind: "info", key: "banner.dropNotSupported" });
    return;
  }
  ui.notify({ kind: "error", key: "datasets.notJsonl", vars: { name: file.name } });
}

export function DropTarget() {
  const t = useT();
  const view = useUi((s) => s.view);
  const [dragging, setDragging] = useState(false);
  const depth = useRef(0);

  useEffect(() => {
    const onEnter = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth.current++;
      setDragging(true);
    };
    const onOver = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      e.preventDefault(); // without this the browser opens the file instead of letting us have it
      if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    };
    const onLeave = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      // enter/leave pair up per element crossed: the drag has left the window when the count is back to 0
      depth.current = Math.max(0, depth.current - 1);
      if (depth.current === 0) setDragging(false);
    };
    const onDrop = (e: DragEvent) => {
      if (!hasFiles(e) || !e.dataTransfer) return;
      e.preventDefault();
      depth.current = 0;
      setDragging(false);
      handleDrop(e.dataTransfer);
    };
    window.addEventListener("dragenter", onEnter);
    window.addEventListener("dragover", onOver);
    window.addEventListener("dragleave", onLeave);
    window.addEventListener("drop", onDrop);
    return () => {
      window.removeEventListener("dragenter", onEnter);
      window.removeEventListener("dragover", onOver);
      window.removeEventListener("dragleave", onLeave);
      window.removeEventListener("drop", onDrop);
    };
  }, []);

  if (!dragging) return null;
  return (
    <div className="drop-overlay" role="status">
      <div>
        {view === "models" ? <IconFolder /> : <IconUpload />}
        <span>{view === "datasets" ? t("datasets.dropHere") : view === "finetune" ? t("finetune.dropHere") : view === "models" ? t("models.dropHere") : t("datasets.dropHereAny")}</span>
      </div>
    </div>
  );
}
