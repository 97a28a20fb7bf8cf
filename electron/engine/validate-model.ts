// Checking a model folder the way generate loads it, without running it — what quantize and export-gguf do before
// they write anything. Model folders from the hub are hostile input; rather than a second set of shape rules here,
// the engine itself checks config.json (every count and size against native/format/limits.h), every safetensors
// header (sizes, offsets, overlaps, shard names) and binds every weight the architecture needs (Model::load's
// binder); then the tokenizer must parse as the chat path parses it and fit in the embedding.
import { join } from "node:path";
import { loadAddon, type NativeModelInfo } from "./addon.js";
import { TextTokenizer } from "../text/tokenizer.js";

export async function validateModelFolder(dir: string): Promise<NativeModelInfo> {
  const native = await loadAddon().loadModel(dir, { threads: 1 });
  let info: NativeModelInfo;
  try {
    info = native.info();
  } finally {
    native.close();
  }
  const tokenizer = TextTokenizer.fromFolder(dir);
  let maxId = -1;
  for (const id of tokenizer.tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id;
  if (maxId < 0) throw new Error(`${join(dir, "tokenizer.json")}: the tokenizer has no tokens`);
  if (maxId >= info.vocabSize) {
    throw new Error(`${join(dir, "tokenizer.json")}: token id ${maxId} is outside config.json vocab_size ${info.vocabSize} (the embedding has ${info.vocabSize} rows)`);
  }
  return info;
}
