// serve --config deploy.yaml (electron/server/deploy-config.ts): each field becomes its serve flag, relative paths are
// the file's, and every mistake is named with file:line:col and the field before anything starts.
import { describe, expect, it } from "vitest";
import { DeployConfigError, parseDeployConfig } from "../../electron/server/deploy-config.js";

const FILE = "/srv/moe/deploy.yaml";
const parse = (text: string) => parseDeployConfig(text, FILE);
const fails = (text: string) => {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(DeployConfigError);
    return (e as Error).message;
  }
  throw new Error("it parsed");
};

describe("deploy config", () => {
  it("maps every field to its flag; relative paths are the file's", () => {
    const r = parse(`# the whole deployment
model: models/qwen3
adapter: /runs/whales/final
data_dir: ./data
allow_dirs: [datasets, /mnt/shared]
device: auto
gpu: 1
threads: 8
kv_cache: int8
web_host: 0.0.0.0
web_port: 8080
web_token: a-long-enough-token-1234
api_host: 127.0.0.1
api_port: 9000
api_key: sk-deploy-12345678
`);
    expect(r.flags).toEqual({
      model: "/srv/moe/models/qwen3", adapter: "/runs/whales/final", data: "/srv/moe/data", device: "auto", gpu: "1",
      threads: "8", "kv-cache": "int8",
      host: "0.0.0.0", port: "8080", token: "a-long-enough-token-1234", "api-host": "127.0.0.1", "api-port": "9000",
      "api-key": "sk-deploy-12345678", api: true, // any api_* field turns the API on
    });
    expect(r.lists).toEqual({ "allow-dir": ["/srv/moe/datasets", "/mnt/shared"] });
  });

  it("api: true alone turns the API on; api: false keeps it off whatever else is set; an empty file sets nothing", () => {
    expect(parse("api: true\n").flags).toEqual({ api: true });
    expect(parse("api: false\napi_port: 9000\nweb_port: 1\n").flags).toEqual({ port: "1" });
    expect(parse("")).toEqual({ flags: {}, lists: {} });
    expect(parse("model:\n").flags).toEqual({}); // a field with no value is not set
  });

  it("names the line, the column and the field of a wrong value", () => {
    expect(fails("model: m\napi_port: eighty\n")).toBe(`${FILE}:2:11: api_port: must be an integer in [0, 65535] (0: any free port), got "eighty"`);
    expect(fails("web_port: 70000\n")).toContain(`${FILE}:1:11: web_port: must be an integer in [0, 65535]`);
    expect(fails("device: gpu\n")).toBe(`${FILE}:1:9: device: must be one of cpu, cuda, auto, emu, got "gpu"`);
    expect(fails("api: yes please\n")).toBe(`${FILE}:1:6: api: must be true or false, got "yes please"`);
    expect(fails("model: 42\n")).toBe(`${FILE}:1:8: model: must be a path, got 42`);
    expect(fails("allow_dirs: /one\n")).toBe(`${FILE}:1:13: allow_dirs: must be a list of paths, got "/one"`);
    expect(fails("allow_dirs:\n  - /a\n  - 3\n")).toBe(`${FILE}:3:5: allow_dirs[1]: must be a path`);
    expect(fails("gpu: -1\n")).toContain(`${FILE}:1:6: gpu: must be an integer in [0, 63]`);
    expect(fails("threads: 0\n")).toBe(`${FILE}:1:10: threads: must be an integer in [1, 1024], got 0`);
    expect(fails("kv_cache: q8\n")).toBe(`${FILE}:1:11: kv_cache: must be one of f32, f16, int8, got "q8"`);
  });

  it("an unknown field says which it may have meant; broken YAML and duplicates say where", () => {
    expect(fails("model: m\nweb_prot: 80\n")).toMatch(new RegExp(`^${FILE}:2:1: web_prot: unknown field \\(did you mean web_port\\?\\); the fields are model, adapter`));
    expect(fails("zzzzzzzz: 1\n")).not.toContain("did you mean");
    expect(fails("model: [unclosed\n")).toMatch(new RegExp(`^${FILE}:\\d+:\\d+: not valid YAML`));
    expect(fails("web_port: 1\nweb_port: 2\n")).toMatch(new RegExp(`^${FILE}:2:1: not valid YAML \\(Map keys must be unique\\)$`));
    expect(fails("- model\n")).toBe(`${FILE}:1:1: the deploy config is a mapping of fields (model: ..., api_port: ...)`);
  });
});

describe("the example the README shows", () => {
  it("assets/deploy/deploy.example.yaml parses", async () => {
    const { readDeployConfig } = await import("../../electron/server/deploy-config.js");
    const { join } = await import("node:path");
    const r = readDeployConfig(join(__dirname, "../../assets/deploy/deploy.example.yaml"));
    expect(r.flags).toMatchObject({ model: "/srv/models/Qwen3-30B-A3B", data: "/var/lib/moe-studio", device: "auto", "kv-cache": "f16", host: "127.0.0.1", port: "8377", api: true, "api-port": "8378" });
  });
});
