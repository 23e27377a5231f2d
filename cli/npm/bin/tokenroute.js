#!/usr/bin/env node
// `npx tokenroute ...`: run the Python CLI, passing arguments, stdio and the exit code
// through. Tries `tokenroute` on PATH, then `uvx tokenroute`, then `pipx run tokenroute`.
"use strict";

const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const GUARD = "TOKENROUTE_NPM_WRAPPER"; // set for the child: never run ourselves again
const args = process.argv.slice(2);

function onPath(name) {
  for (const dir of (process.env.PATH || "").split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.realpathSync(candidate) !== fs.realpathSync(__filename)) return candidate;
    } catch (_) {
      // not here
    }
  }
  return null;
}

const ways = [];
if (!process.env[GUARD]) {
  const direct = onPath("tokenroute");
  if (direct) ways.push([direct, args]);
}
ways.push(["uvx", ["tokenroute", ...args]]);
ways.push(["pipx", ["run", "tokenroute", ...args]]);

for (const [command, commandArgs] of ways) {
  const run = spawnSync(command, commandArgs, {
    stdio: "inherit",
    env: { ...process.env, [GUARD]: "1" },
  });
  if (run.error && run.error.code === "ENOENT") continue;
  if (run.error) {
    process.stderr.write(`tokenroute: error: cannot run ${command}: ${run.error.message}\n`);
    process.exit(1);
  }
  if (run.signal) process.kill(process.pid, run.signal);
  process.exit(run.status === null ? 1 : run.status);
}

process.stderr.write(
  "tokenroute: error: the tokenroute CLI is not installed: `pipx install tokenroute`, " +
    "or install uv (https://docs.astral.sh/uv/) so that `uvx tokenroute` works\n",
);
process.exit(1);
