// A small, dependency-free client for Asena's managed protocol (Ignis's wire format):
// every message is {"event": string, "data"?: any}.
//
//   const client = new ManagedClient({ heartbeatInterval: 10000, encrypt: true });
//   await client.connect("ws://127.0.0.1:3000/ws");           // with encrypt: keys agreed too
//   const me = await client.authenticate("alice-token");   // {id, userId, time}
//   const { rooms, denied } = await client.join(["public-1", "secret"]);
//   client.on("said", (data) => console.log(data.from, data.text));
//   client.send("say", { room: "public-1", text: "hi" });
//
// authenticate() rejects with an Error whose `code` is the close code (4001: too slow, 4003:
// refused). join() and leave() reject with an Error whose `code` is "NO_ANSWER" when no answer
// comes within `answerTimeout` ms (default 5000; 0 waits as long as the socket is open): a
// server of Ignis 0.0.7 never answers them, although it does join and leave the rooms. Heartbeats start once authenticated, every `heartbeatInterval` ms (a third of
// the server's heartbeat timeout is a good value). on("close", ({code, reason}) => ..)
// reports the end of the connection; on("error", ({message}) => ..) the server's errors.
//
// With `encrypt: true` (WebCrypto: a secure context, which http://localhost is) connect()
// agrees keys before anything else: `encrypt` with an ephemeral ECDH P-256 public key, the
// server's `encrypted` answer with its key and a salt, HKDF-SHA256 for one AES-256-GCM key
// per direction. Every message after that, the credentials included, is sealed with the
// nonce `direction tag || 64-bit counter` (also the associated data); a message from the
// server that is not the next sealed one closes the socket with 4005.
// Works as a classic script (window.ManagedClient) and as a CommonJS module.
(function (root) {
  "use strict";

  const CLOSE_REASONS = {
    1000: "closed",
    1001: "server shutting down",
    4001: "authentication timeout",
    4002: "heartbeat timeout",
    4003: "authentication failed",
    4004: "encryption required",
    4005: "decryption failed",
  };

  const C2S_INFO = "asena-managed-v2 client-to-server";
  const S2C_INFO = "asena-managed-v2 server-to-client";
  const C2S_TAG = 1;
  const S2C_TAG = 2;
  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

  function toBase64(bytes) {
    let text = "";
    for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
    return btoa(text);
  }

  function fromBase64(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  /** The 12-byte nonce of a direction's message `counter`: tag (4 bytes), counter (8, BE). */
  function nonce(tag, counter) {
    const bytes = new Uint8Array(12);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, tag);
    view.setBigUint64(4, BigInt(counter));
    return bytes;
  }

  class ManagedClient {
    constructor(options = {}) {
      this.heartbeatInterval = options.heartbeatInterval ?? 10000;
      this.answerTimeout = options.answerTimeout ?? 5000;
      this.WebSocket = options.WebSocket ?? root.WebSocket;
      this.socket = null;
      this.user = null;
      this.handlers = new Map();
      this.pending = new Map(); // "join" / "leave" / "connected" -> [{resolve, reject}]
      this.heartbeat = null;
      this.encrypt = options.encrypt ?? false;
      this.subtle = options.subtle ?? root.crypto?.subtle;
      this.channel = null; // {up, down}: {key, tag, next} per direction, once keys are agreed
      this.inbox = Promise.resolve(); // received messages, handled one after the other
      this.outbox = Promise.resolve(); // sealed messages, sent in counter order
    }

    /** Opens the socket (and agrees keys with `encrypt`); resolves once it is ready. */
    async connect(url) {
      if (this.socket) this.close();
      await new Promise((resolve, reject) => {
        const socket = new this.WebSocket(url);
        this.socket = socket;
        let opened = false;
        socket.onopen = () => { opened = true; resolve(this); };
        socket.onmessage = (e) => {
          this.inbox = this.inbox
            .then(() => this._receive(e.data))
            .catch((error) => this._refuse(socket, error));
        };
        socket.onclose = (e) => {
          if (this.socket !== socket) return;
          this._closed(e.code, e.reason || CLOSE_REASONS[e.code] || "");
          if (!opened) reject(closeError(e.code, e.reason));
        };
      });
      if (this.encrypt) await this._agree();
      return this;
    }

    /** The key agreement: `encrypt`, the server's `encrypted`, HKDF for both directions. */
    async _agree() {
      if (!this.subtle) throw new Error("encryption needs WebCrypto (a secure context)");
      const subtle = this.subtle;
      const curve = { name: "ECDH", namedCurve: "P-256" };
      const pair = await subtle.generateKey(curve, false, ["deriveBits"]);
      const publicKey = toBase64(await subtle.exportKey("raw", pair.publicKey));
      const answer = this._await("encrypted");
      this._sendText(JSON.stringify({ event: "encrypt", data: { publicKey } }));
      const { serverPublicKey, salt } = await answer;
      const server = await subtle.importKey("raw", fromBase64(serverPublicKey), curve, false, []);
      const secret = await subtle.deriveBits({ name: "ECDH", public: server }, pair.privateKey, 256);
      const ikm = await subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
      const key = (info, usage) => subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: fromBase64(salt), info: utf8.encode(info) },
        ikm, { name: "AES-GCM", length: 256 }, false, [usage]);
      this.channel = {
        up: { key: await key(C2S_INFO, "encrypt"), tag: C2S_TAG, next: 0 },
        down: { key: await key(S2C_INFO, "decrypt"), tag: S2C_TAG, next: 0 },
      };
    }

    /** Sends `authenticate`; resolves with the `connected` data, rejects on a close. */
    authenticate(token, extra = {}) {
      const answer = this._await("connected");
      this.send("authenticate", { type: "token", token, ...extra });
      return answer.then((data) => {
        this.user = data;
        this._startHeartbeat();
        return data;
      });
    }

    /** Asks to join rooms; resolves with `{rooms, denied}`, rejects without an answer. */
    join(rooms) {
      const answer = this._await("join", this.answerTimeout);
      this.send("join", { rooms: [].concat(rooms) });
      return answer;
    }

    /** Leaves rooms; resolves with `{rooms}` (the rooms actually left), rejects without an answer. */
    leave(rooms) {
      const answer = this._await("leave", this.answerTimeout);
      this.send("leave", { rooms: [].concat(rooms) });
      return answer;
    }

    /** Sends an event (sealed on an encrypted channel); false when the socket is not open. */
    send(event, data) {
      if (!this.socket || this.socket.readyState !== 1) return false;
      const message = data === undefined ? { event } : { event, data };
      this._sendText(JSON.stringify(message));
      return true;
    }

    /** Sends text as is, or sealed with the next counter once keys are agreed. */
    _sendText(text) {
      const socket = this.socket;
      if (!this.channel) {
        socket.send(text);
        return;
      }
      const up = this.channel.up;
      const iv = nonce(up.tag, up.next++);
      this.outbox = this.outbox.then(async () => {
        const payload = await this.subtle.encrypt(
          { name: "AES-GCM", iv, additionalData: iv }, up.key, utf8.encode(text));
        if (socket.readyState === 1) {
          socket.send(JSON.stringify({
            event: "encrypted",
            data: { iv: toBase64(iv), payload: toBase64(payload) },
          }));
        }
      });
    }

    /** Calls `handler(data, message)` for every `event`; returns a function that unsubscribes. */
    on(event, handler) {
      if (!this.handlers.has(event)) this.handlers.set(event, new Set());
      this.handlers.get(event).add(handler);
      return () => this.handlers.get(event).delete(handler);
    }

    /** Says goodbye (`disconnect`) and closes. */
    close() {
      const socket = this.socket;
      if (!socket) return;
      this.send("disconnect");
      // After the sealed `disconnect` went out.
      this.outbox.then(() => socket.close(1000, "Client disconnected"));
      this._closed(1000, "Client disconnected");
    }

    get connected() {
      return !!this.socket && this.socket.readyState === 1 && !!this.user;
    }

    /** The data of the next `event`; after `timeout` ms (when > 0) a "NO_ANSWER" rejection. */
    _await(event, timeout = 0) {
      return new Promise((resolve, reject) => {
        if (!this.pending.has(event)) this.pending.set(event, []);
        const queue = this.pending.get(event);
        if (!(timeout > 0)) {
          queue.push({ resolve, reject });
          return;
        }
        const timer = setTimeout(() => {
          // A later answer goes to the next waiter, not to this one.
          const at = queue.indexOf(waiter);
          if (at >= 0) queue.splice(at, 1);
          const error = new Error(`no answer to ${event} within ${timeout} ms`);
          error.code = "NO_ANSWER";
          reject(error);
        }, timeout);
        const waiter = {
          resolve: (data) => { clearTimeout(timer); resolve(data); },
          reject: (error) => { clearTimeout(timer); reject(error); },
        };
        queue.push(waiter);
      });
    }

    async _receive(text) {
      let message;
      try { message = JSON.parse(text); } catch { message = null; }
      if (this.channel) text = await this._open(message);
      if (this.channel) {
        try { message = JSON.parse(text); } catch { return; }
      }
      if (!message || typeof message.event !== "string") return;
      const waiting = this.pending.get(message.event);
      if (waiting && waiting.length) waiting.shift().resolve(message.data);
      this._emit(message.event, message.data, message);
    }

    /** The plaintext of the next sealed message; throws for anything else. */
    async _open(message) {
      const down = this.channel.down;
      const iv = nonce(down.tag, down.next);
      if (message?.event !== "encrypted" || message.data?.iv !== toBase64(iv)) {
        throw new Error("not the next sealed message");
      }
      const plain = await this.subtle.decrypt(
        { name: "AES-GCM", iv, additionalData: iv }, down.key, fromBase64(message.data.payload));
      down.next++;
      return fromUtf8.decode(plain);
    }

    /** A message broke the channel: close with 4005, as the server does. */
    _refuse(socket, error) {
      if (this.socket !== socket) return;
      console.error("refusing the connection:", error);
      socket.close(4005, "Decryption failed");
      this._closed(4005, "Decryption failed");
    }

    _emit(event, data, message) {
      for (const handler of this.handlers.get(event) ?? []) {
        try { handler(data, message); } catch (e) { console.error(e); }
      }
    }

    _startHeartbeat() {
      clearInterval(this.heartbeat);
      if (this.heartbeatInterval > 0) {
        this.heartbeat = setInterval(() => this.send("heartbeat"), this.heartbeatInterval);
      }
    }

    _closed(code, reason) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
      this.socket = null;
      this.user = null;
      this.channel = null;
      const error = closeError(code, reason);
      for (const waiting of this.pending.values()) {
        for (const { reject } of waiting) reject(error);
      }
      this.pending.clear();
      this._emit("close", { code, reason });
    }
  }

  function closeError(code, reason) {
    const error = new Error(`closed ${code}: ${reason || CLOSE_REASONS[code] || ""}`);
    error.code = code;
    return error;
  }

  ManagedClient.CLOSE_REASONS = CLOSE_REASONS;
  if (typeof module === "object" && module.exports) module.exports = { ManagedClient };
  else root.ManagedClient = ManagedClient;
})(typeof globalThis !== "undefined" ? globalThis : this);
