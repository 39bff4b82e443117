// A conversation with the running chat example through the TypeScript client that The
// Codegen Project's CLI generated from the chat's own AsyncAPI document (gen/, made by
// scripts/codegen-ts.sh). Every message the server sends is validated by the generated
// subscriber against the document's schemas; a message that fails validation, a missing
// answer (5 s) or a wrong one fails the run with a non-zero exit.
//
//   node dist/conversation.js ws://127.0.0.1:PORT
import WebSocket from 'ws';
import { websocket } from './gen/channels';
import { ChatSocketReceivePayload } from './gen/payloads/ChatSocketReceivePayload';
import { ChatSocketSendPayload } from './gen/payloads/ChatSocketSendPayload';
import { ReceiveMessage } from './gen/payloads/ReceiveMessage';
import { ReceivePrivate } from './gen/payloads/ReceivePrivate';
import { ReceiveRoomInfo } from './gen/payloads/ReceiveRoomInfo';
import { ReceivePing } from './gen/payloads/ReceivePing';

const base = process.argv[2];
if (!base) {
  throw new Error('usage: node dist/conversation.js ws://127.0.0.1:PORT');
}
const room = `ts-${process.pid}`;

/** One chat user: a socket whose every incoming message went through the generated, validating subscriber. */
class User {
  private inbox: ChatSocketSendPayload[] = [];
  private waiters: Array<() => void> = [];

  private constructor(readonly name: string, readonly ws: WebSocket) {
    websocket.subscribeToChatSocketSend({
      ws,
      onDataCallback: ({ err, msg }) => {
        if (err) {
          fail(`${name} got a message the document does not describe: ${err.message}`);
        }
        this.inbox.push(msg!);
        this.waiters.splice(0).forEach((wake) => wake());
      },
    });
  }

  static async connect(name: string): Promise<User> {
    const ws = new WebSocket(`${base}/chat?username=${name}&room=${room}`);
    // Subscribed in the `open` handler itself: the welcome can arrive in the same read as
    // the upgrade's answer, before a promise continuation would run.
    return new Promise<User>((resolve, reject) => {
      ws.once('open', () => resolve(new User(name, ws)));
      ws.once('error', reject);
    });
  }

  /** The first message of `type` (earlier ones of other types are kept), within 5 s. */
  async next(type: string): Promise<any> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const at = this.inbox.findIndex((m) => (m as any).type === type);
      if (at >= 0) {
        return this.inbox.splice(at, 1)[0];
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        fail(`${this.name} waited 5 s for \`${type}\`; has ${JSON.stringify(this.inbox.map((m) => (m as any).type))}`);
      }
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  send(message: ChatSocketReceivePayload) {
    return websocket.publishToChatSocketReceive({ message, ws: this.ws });
  }
}

function fail(why: string): never {
  console.error(`conversation: ${why}`);
  process.exit(1);
}

function expect(what: string, got: unknown, want: unknown) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
  console.log(`ok   ${what}`);
}

async function main() {
  const alice = await User.connect('alice');
  const aliceId = (await alice.next('welcome')).id;
  const bob = await User.connect('bob');
  const welcome = await bob.next('welcome');
  expect('bob is welcomed with who is in the room', [...welcome.users].sort(), ['alice', 'bob']);
  expect('alice hears bob join', (await alice.next('user_joined')).username, 'bob');

  await alice.send(new ReceiveMessage({ message: 'hello from TypeScript' }));
  const line = await bob.next('message');
  expect('bob gets alice\'s line', [line.username, line.message], ['alice', 'hello from TypeScript']);

  await bob.send(new ReceivePrivate({ to: aliceId, message: 'psst' }));
  const dm = await alice.next('private_message');
  expect('alice gets bob\'s private message', [dm.from, dm.message], ['bob', 'psst']);

  // Requests the document describes with a `reply` have publish functions of their own.
  await websocket.publishToChatSocketRoomInfo({ message: new ReceiveRoomInfo({}), ws: alice.ws });
  const info = await alice.next('room_info');
  expect('room_info answers with the room and its size', [info.room, info.totalUsers], [room, 2]);

  await websocket.publishToChatSocketPing({ message: new ReceivePing({}), ws: alice.ws });
  await alice.next('pong');
  console.log('ok   ping is answered with pong');

  // A message the server refuses: its error reply is one the document describes.
  alice.ws.send(JSON.stringify({ type: 'private', message: 'to nobody' }));
  const error = await alice.next('error');
  if (typeof error.message !== 'string' || error.message.length === 0) {
    fail(`the error reply has no message: ${error.marshal()}`);
  }
  console.log(`ok   an invalid message is answered with an error (${error.message})`);

  bob.ws.close(1000);
  expect('alice hears bob leave', (await alice.next('user_left')).username, 'bob');
  alice.ws.close(1000);
  console.log('conversation: every step passed');
}

main().catch((e) => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
