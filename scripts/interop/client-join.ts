// The realtime example's browser client (examples/realtime/client.js) against a real Ignis
// 0.0.7 server, run by Bun for tests/interop_ignis.rs: it connects to WS_URL, logs in as
// alice, and joins and leaves a room, which Ignis does without answering. Prints one line
// `ready {"authenticated": ..., "join": ..., "leave": ...}` where join and leave are the
// `code` of their rejection (or their answer).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { ManagedClient } = require('../../examples/realtime/client.js');

const url = process.env.WS_URL;
if (!url) {
  console.error('client-join: WS_URL is not set');
  process.exit(2);
}
const settle = (promise: Promise<unknown>) =>
  promise.then(
    answer => ({ answer }),
    (error: { code?: unknown; message?: string }) => ({ code: error.code, message: error.message }),
  );

const client = new ManagedClient({ answerTimeout: Number(process.env.ANSWER_TIMEOUT ?? 500) });
await client.connect(url);
const me = await client.authenticate('alice-token');
const join = await settle(client.join(['lobby']));
const leave = await settle(client.leave(['lobby']));
console.log(`ready ${JSON.stringify({ authenticated: me.userId, join, leave })}`);
client.close();
process.exit(0);
