// The client matrix's node-redis client: node node_redis.js PLAN.json
// (NODE_PATH=/usr/share/nodejs for Debian's node-redis). Runs the plan
// tests/test_clients.py writes and prints one JSON line per step, in the form
// tests/clients/redis_py.py prints: the commands through sendCommand, the
// sorted-set views through node-redis's own methods for them.
'use strict';
const fs = require('fs');
const { createClient } = require('redis');

const plan = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const socket = { host: plan.host, port: plan.port, connectTimeout: 30000, reconnectStrategy: false };

async function emit(step, i, call) {
  let line;
  try {
    const reply = await call();
    line = { step, i, reply: reply === undefined ? null : reply };
  } catch (e) {
    if (!e || e.constructor.name !== 'ErrorReply') throw e;
    line = { step, i, error: e.message };
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function view(r, op, args) {
  const [key, a, b] = args;
  switch (op) {
    case 'zrevrange':
      return (await r.zRangeWithScores(key, Number(a), Number(b), { REV: true })).map((m) => [m.value, m.score]);
    case 'zscore': return r.zScore(key, a);
    case 'zcard': return r.zCard(key);
    case 'exists': return r.exists(key);
    case 'type': return r.type(key);
    default: throw new Error(`unknown view ${op}`);
  }
}

async function main() {
  const r = createClient({ socket, password: plan.password });
  r.on('error', (e) => { process.stderr.write(`node-redis: ${e}\n`); });
  await r.connect();
  for (const [i, cmd] of plan.commands.entries()) await emit('cmd', i, () => r.sendCommand(cmd));
  for (const [i, [op, ...args]] of plan.views.entries()) await emit('view', i, () => view(r, op, args));
  const u = createClient({ socket, username: plan.user, password: plan.user_password });
  u.on('error', (e) => { process.stderr.write(`node-redis: ${e}\n`); });
  await u.connect();
  for (const [i, cmd] of plan.user_commands.entries()) await emit('user', i, () => u.sendCommand(cmd));
  await r.quit();
  await u.quit();
}

main().catch((e) => { process.stderr.write(`node-redis: ${e.stack || e}\n`); process.exit(1); });
