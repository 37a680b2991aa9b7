// Entry of one load process of `fabriek bench scaling`: the plan as JSON in
// argv[2], the result as one JSON line on stdout.
import { type LoadProcessPlan, runLoadProcess } from './load-process.js';

const plan = JSON.parse(process.argv[2] ?? '{}') as LoadProcessPlan;
runLoadProcess(plan).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(`load process failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
