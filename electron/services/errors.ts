// Shorthands for the errors services throw: RpcError codes the UI can act on, with messages a user can read.
import { RpcError } from "../contract.js";

export const notFound = (what: string) => new RpcError("not_found", what);
export const noModel = () => new RpcError("no_model", "No model is loaded. Open a model folder first.");
export const busy = (what: string) => new RpcError("busy", what);
export const engineError = (message: string) => new RpcError("engine", message);
