#!/usr/bin/env node
// The ptxas table: every kernel of kernels/*.cu compiled for each architecture with -Xptxas -v, one row per kernel
// (demangled) and one column group per architecture: registers, static shared memory, spill bytes (stores + loads)
// and stack frame. Exits 1 when any kernel spills or keeps a stack frame (the target is zero), 2 without nvcc.
//   node kernels/ptxas-report.mjs [--arch 80,86,89,90] [--json]
// Needs only nvcc (no GPU). About 3 s per file and architecture on 2 cores; files are compiled two at a time.
import { execFileSync, spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const args = process.argv.slice(2);
const archIdx = args.indexOf("--arch");
const archs = (archIdx >= 0 ? args[archIdx + 1] : "80,86,89,90").split(",").map((a) => a.trim());
const asJson = args.includes("--json");
const nvcc = process.env.NVCC || "nvcc";
try { execFileSync(nvcc, ["--version"], { stdio: "ignore" }); } catch {
  console.error(`ptxas-report: ${nvcc} not found (set NVCC or put nvcc on PATH)`);
  process.exit(2);
}

const files = readdirSync(here).filter((f) => f.endsWith(".cu")).sort();
const jobs = files.flatMap((f) => archs.map((a) => ({ file: f, arch: a })));

function compile({ file, arch }) {
  return new Promise((resolve, reject) => {
    const p = spawn(nvcc, ["-std=c++17", `-arch=sm_${arch}`, "-Xptxas", "-v", "-DMOE_HAVE_CUDA=1", "-c", join(here, file), `-I${root}`, `-I${join(root, "native")}`,
                           "-o", "/dev/null"]);
    let err = "";
    p.stderr.on("data", (d) => { err += d; });
    p.stdout.on("data", (d) => { err += d; });
    p.on("close", (code) => (code === 0 ? resolve(err) : reject(new Error(`${file} sm_${arch}: nvcc exited ${code}\n${err}`))));
  });
}

// "Compiling entry function 'X' for 'sm_80'" ... "N bytes stack frame, S bytes spill stores, L bytes spill loads" ...
// "Used R registers, ... B bytes smem"
function parse(text, arch) {
  const out = [];
  let cur = null;
  for (const line of text.split("\n")) {
    let m = /Compiling entry function '([^']+)'/.exec(line);
    if (m) { cur = { mangled: m[1], arch, regs: 0, smem: 0, spill: 0, stack: 0 }; out.push(cur); continue; }
    if (!cur) continue;
    m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (m) { cur.stack = Number(m[1]); cur.spill = Number(m[2]) + Number(m[3]); continue; }
    m = /Used (\d+) registers/.exec(line);
    if (m) { cur.regs = Number(m[1]); const s = /(\d+) bytes smem/.exec(line); cur.smem = s ? Number(s[1]) : 0; }
  }
  return out;
}

const results = [];
const queue = jobs.slice();
async function worker() {
  for (let j = queue.shift(); j; j = queue.shift()) results.push(...parse(await compile(j), j.arch).map((r) => ({ ...r, file: j.file })));
}
await Promise.all([worker(), worker()]);

const mangled = [...new Set(results.map((r) => r.mangled))];
const demangled = execFileSync("c++filt", { input: mangled.join("\n"), encoding: "utf8" }).trim().split("\n");
const nameOf = new Map(mangled.map((m, i) => [m, demangled[i].replace(/^moe::cuda::/, "").replace(/\(.*$/, "").replace(/moe::cuda::/g, "")]));
const rows = new Map();
for (const r of results) {
  const key = `${r.file}\t${nameOf.get(r.mangled)}`;
  if (!rows.has(key)) rows.set(key, {});
  rows.get(key)[r.arch] = r;
}
const bad = results.filter((r) => r.spill > 0 || r.stack > 0);
if (asJson) {
  console.log(JSON.stringify(results.map((r) => ({ file: r.file, kernel: nameOf.get(r.mangled), arch: `sm_${r.arch}`, registers: r.regs,
    smem_bytes: r.smem, spill_bytes: r.spill, stack_bytes: r.stack })), null, 1));
} else {
  console.log(`| file | kernel | ${archs.map((a) => `sm_${a} regs / smem / spill / stack`).join(" | ")} |`);
  console.log(`|---|---|${archs.map(() => "---").join("|")}|`);
  for (const [key, per] of [...rows].sort()) {
    const [file, kernel] = key.split("\t");
    console.log(`| ${file} | ${kernel} | ${archs.map((a) => (per[a] ? `${per[a].regs} / ${per[a].smem} / ${per[a].spill} / ${per[a].stack}` : "-")).join(" | ")} |`);
  }
  console.log(`${results.length} kernel builds over ${archs.length} architectures: ${bad.length === 0 ? "no spills, no stack frames" : `${bad.length} spill or keep a stack frame`}`);
}
process.exit(bad.length === 0 ? 0 : 1);
