// Prints vitest's counts as one plain closing line, "tests: N passed, N failed, N skipped",
// the form CI reads whatever the test runner.
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2] ?? "loadtest/reports/vitest.json";
if (!existsSync(file)) {
  console.log("tests: 0 passed, 1 failed (vitest wrote no report)");
  process.exit(0);
}
const r = JSON.parse(readFileSync(file, "utf8")) as {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
};
console.log(
  `tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`,
);
