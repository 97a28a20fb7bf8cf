// Which files of a hub repo a model needs: the engine reads config.json and the safetensors weights (+ the shard
// index), the app's text side the tokenizer and chat template, and sampling defaults come from generation_config.
// Everything else (README, *.bin / *.gguf / *.pt copies of the weights, subfolders such as original/ or onnx/, images)
// is left on the hub: a repo often carries several copies of the weights and we want one.
import { HubError, type RemoteFile } from "./hub.js";

const ALWAYS = new Set([
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
  // the older spelling of a separate chat template (model-folder.ts reads it too)
  "chat_template.json",
]);
/** A tokenizer in pieces, needed only when the repo has no tokenizer.json. */
const TOKENIZER_PIECES = new Set(["vocab.json", "merges.txt", "tokenizer.model", "vocab.txt"]);

export function isWeightFile(path: string): boolean {
  return !path.includes("/") && (path.endsWith(".safetensors") || path.endsWith(".safetensors.index.json"));
}

/**
 * Which safetensors files are the transformers checkpoint: with model.safetensors.index.json, its shards
 * (model-00001-of-00004.safetensors, ...); else model.safetensors; else every top-level *.safetensors. A repo may
 * also carry the same weights in another layout, e.g. Mistral's consolidated.safetensors for mistral-inference
 * (as large as the model itself): those are never taken.
 */
function weightFiles(top: RemoteFile[]): RemoteFile[] {
  const st = top.filter((f) => isWeightFile(f.path) && !f.path.startsWith("consolidated"));
  if (st.some((f) => f.path === "model.safetensors.index.json")) {
    return st.filter((f) => f.path === "model.safetensors.index.json" || /^model-\d+-of-\d+\.safetensors$/.test(f.path));
  }
  if (st.some((f) => f.path === "model.safetensors")) return st.filter((f) => f.path === "model.safetensors");
  return st;
}

/** The files to download, in a stable order (small files first, then the weights by name). */
export function selectFiles(files: RemoteFile[], repo: string): RemoteFile[] {
  const top = files.filter((f) => !f.path.includes("/"));
  const hasTokenizerJson = top.some((f) => f.path === "tokenizer.json");
  const weights = new Set(weightFiles(top));
  const chosen = top.filter((f) => ALWAYS.has(f.path) || weights.has(f) || (!hasTokenizerJson && TOKENIZER_PIECES.has(f.path)));
  if (!chosen.some((f) => f.path === "config.json")) throw new HubError("invalid", `${repo} has no config.json: it is not a Hugging Face transformers model`);
  if (!chosen.some((f) => f.path.endsWith(".safetensors"))) {
    const other = top.filter((f) => /\.(bin|gguf|pt|pth)$/.test(f.path)).map((f) => f.path);
    throw new HubError(
      "invalid",
      `${repo} has no *.safetensors weights${other.length ? ` (only ${other.slice(0, 3).join(", ")}${other.length > 3 ? ", …" : ""})` : ""}: MoE Studio loads safetensors`,
    );
  }
  const weight = (f: RemoteFile) => (f.path.endsWith(".safetensors") ? 1 : 0);
  return chosen.sort((a, b) => weight(a) - weight(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
