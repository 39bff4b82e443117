// A small app on the real Ignis 0.0.7 WebSocket component, run by Bun, for
// tests/interop_ignis.rs. It listens on 127.0.0.1 (PORT, 0 for any free port), talks to the
// Redis at REDIS_HOST:REDIS_PORT, and prints one line `ready {"port":N}` once the WebSocket
// server is up and subscribed to its Redis channels.
//
// Clients authenticate with `{"token": "U-token"}` and become user U (the same credential
// our test services admit); every room they ask for is allowed. CHANNEL_PREFIX (default
// `ws`, Ignis's own) replaces the first word of Ignis's Redis channels (`ws:room:R`,
// `ws:user:U`, `ws:client:C`, `ws:broadcast`), so that parallel tests on one Redis each have
// channels of their own; the channel layout is otherwise the component's.
//
// The test drives the server's sends through POST /control with a JSON body:
// - `{"op": "send", "destination"?, "event", "data"}`: the server helper's public `send()`
//   (no destination: everyone; a local client: it; anything else: a room).
// - `{"op": "publish", "type", "target"?, "event", "data", "exclude"?}`: the helper's own
//   Redis publication for the other instances (`publishToRedis`, which `send()` uses; the
//   only way its server reaches a user, a room with exclusions or a remote client).
// - `{"op": "local", "type", "target"?, "event", "data", "exclude"?}`: the helper's local
//   deliveries (`sendToUser`, `sendToRoom`, `broadcast`, `sendToClient`).
// - `{"op": "emit", "type", "target"?, "event", "data", "exclude"?}`: a standalone
//   `WebSocketEmitter` (serverId `emitter`).
// - `{"op": "client", "id"}`: `{"userId", "rooms", "state"}` of a local client, or null.
import 'reflect-metadata';
import {
  BaseApplication,
  WebSocketBindingKeys,
  WebSocketComponent,
  type IApplicationInfo,
} from '@venizia/ignis';
import {
  RedisHelper,
  WebSocketChannels,
  WebSocketEmitter,
  type WebSocketServerHelper,
} from '@venizia/ignis-helpers';

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) {
    console.error(`ignis-server: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const prefix = env('CHANNEL_PREFIX', 'ws');
if (prefix !== 'ws') {
  // The component reads these at every publish and subscription.
  const channels = WebSocketChannels as unknown as Record<string, string>;
  channels.BROADCAST = `${prefix}:broadcast`;
  channels.ROOM_PREFIX = `${prefix}:room:`;
  channels.CLIENT_PREFIX = `${prefix}:client:`;
  channels.USER_PREFIX = `${prefix}:user:`;
}

const redis = (name: string) =>
  new RedisHelper({
    name,
    host: env('REDIS_HOST', '127.0.0.1'),
    port: Number(env('REDIS_PORT', '6379')),
    autoConnect: false,
  });

class InteropApp extends BaseApplication {
  getAppInfo(): IApplicationInfo {
    return { name: 'ignis-interop', version: '0.0.0', description: 'interop test server' };
  }

  staticConfigure(): void {}

  setupMiddlewares(): void {}

  preConfigure(): void {
    this.bind({ key: WebSocketBindingKeys.SERVER_OPTIONS }).toValue({
      identifier: 'ignis-interop',
      path: '/ws',
    });
    this.bind({ key: WebSocketBindingKeys.REDIS_CONNECTION }).toValue(redis('ignis-interop'));
    this.bind({ key: WebSocketBindingKeys.AUTHENTICATE_HANDLER }).toValue(
      (data: Record<string, unknown>) => {
        const token = typeof data.token === 'string' ? data.token : '';
        return token.endsWith('-token') ? { userId: token.slice(0, -'-token'.length) } : null;
      },
    );
    this.bind({ key: WebSocketBindingKeys.VALIDATE_ROOM_HANDLER }).toValue(
      (opts: { rooms: string[] }) => opts.rooms,
    );
    this.component(WebSocketComponent);
    this.getRootRouter().post('/control', async c => c.json(await control(this, await c.req.json())));
  }

  postConfigure(): void {}
}

let emitter: WebSocketEmitter | undefined;

type Command = {
  op: string;
  type?: string;
  target?: string;
  destination?: string;
  id?: string;
  event: string;
  data: unknown;
  exclude?: string[];
};

async function control(app: InteropApp, cmd: Command): Promise<unknown> {
  const ws = app.get<WebSocketServerHelper>({ key: WebSocketBindingKeys.WEBSOCKET_INSTANCE });
  const { event, data, exclude } = cmd;
  const target = cmd.target ?? '';
  switch (cmd.op) {
    case 'send':
      ws.send({ destination: cmd.destination, payload: { topic: event, data } });
      return { ok: true };
    case 'publish':
      // Private in the typings; `send()` publishes through it.
      (ws as unknown as { publishToRedis: (opts: object) => void }).publishToRedis({
        type: cmd.type,
        target: cmd.target,
        event,
        data,
        exclude,
      });
      return { ok: true };
    case 'local':
      switch (cmd.type) {
        case 'user':
          ws.sendToUser({ userId: target, event, data });
          break;
        case 'room':
          ws.sendToRoom({ room: target, event, data, exclude });
          break;
        case 'client':
          ws.sendToClient({ clientId: target, event, data });
          break;
        default:
          ws.broadcast({ event, data, exclude });
      }
      return { ok: true };
    case 'emit':
      if (!emitter) {
        emitter = new WebSocketEmitter({
          identifier: 'ignis-interop-emitter',
          redisConnection: redis('ignis-interop-emitter'),
        });
        await emitter.configure();
      }
      switch (cmd.type) {
        case 'user':
          await emitter.toUser({ userId: target, event, data });
          break;
        case 'room':
          await emitter.toRoom({ room: target, event, data, exclude });
          break;
        case 'client':
          await emitter.toClient({ clientId: target, event, data });
          break;
        default:
          await emitter.broadcast({ event, data });
      }
      return { ok: true };
    case 'client': {
      const client = ws.getClients({ id: cmd.id }) as
        | { userId?: string; rooms: Set<string>; state: string }
        | undefined;
      return client
        ? { userId: client.userId ?? null, rooms: [...client.rooms].sort(), state: client.state }
        : null;
    }
    default:
      return { error: `unknown op ${cmd.op}` };
  }
}

const app = new InteropApp({
  scope: 'InteropApp',
  config: {
    host: '127.0.0.1',
    port: Number(env('PORT', '0')),
    path: { base: '/', isStrict: false },
  },
});
app.init();
await app.start();
const port = app.getServerInstance<{ port: number }>()?.port;
console.log(`ready ${JSON.stringify({ port })}`);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => process.exit(0));
}
