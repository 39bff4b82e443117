// Validates AsyncAPI documents with the official parser (@asyncapi/parser, pinned in
// package.json): `node scripts/asyncapi/validate.mjs FILE...`. Prints every diagnostic
// (severity, path, message); exits 1 when a file does not parse or has an error.
// Install the parser first with `bash scripts/asyncapi.sh`.
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node scripts/asyncapi/validate.mjs FILE...');
  process.exit(2);
}

const parser = new Parser();
let failed = false;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    console.error(`${file}: cannot read: ${e.message}`);
    failed = true;
    continue;
  }
  let result;
  try {
    result = await parser.parse(text, { source: file });
  } catch (e) {
    console.error(`${file}: the parser failed: ${e.stack ?? e}`);
    failed = true;
    continue;
  }
  const { document, diagnostics } = result;
  let errors = 0;
  for (const d of diagnostics) {
    const severity = SEVERITY[d.severity] ?? `severity ${d.severity}`;
    const path = d.path.length === 0 ? '(root)' : d.path.join('.');
    console.error(`${file}: ${severity} [${d.code}] at ${path}: ${d.message}`);
    if (d.severity === DiagnosticSeverity.Error) errors += 1;
  }
  if (document === undefined || errors > 0) {
    console.error(`${file}: INVALID (${errors} error(s))`);
    failed = true;
    continue;
  }
  const version = document.version();
  const channels = document.channels().length;
  const operations = document.operations().length;
  console.log(`${file}: valid AsyncAPI ${version} (${channels} channels, ${operations} operations)`);
}
process.exit(failed ? 1 : 0);
