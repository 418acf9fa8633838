#!/usr/bin/env node
// braft_cli's commands over baidu_std, plus get_leader and status (see lib/cli.ts).
import { runCli } from '../dist/cli.js';

process.exitCode = await runCli(process.argv.slice(2));
