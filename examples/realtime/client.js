// A small, dependency-free client for Asena's managed protocol (Ignis's wire format):
// every message is {"event": string, "data"?: any}.
//
//   const client = new ManagedClient({ heartbeatInterval: 10000 });
//   await client.connect("ws://127.0.0.1:3000/ws");
//   const me = await client.authenticate("alice-token");   // {id, userId, time}
//   const { rooms, denied } = await client.join(["public-1", "secret"]);
//   client.on("said", (data) => console.log(data.from, data.text));
//   client.send("say", { room: "public-1", text: "hi" });
//
// authenticate() rejects with an Error whose `code` is the close code (4001: too slow, 4003:
// refused). Heartbeats start once authenticated, every `heartbeatInterval` ms (a third of
// the server's heartbeat timeout is a good value). on("close", ({code, reason}) => ..)
// reports the end of the connection; on("error", ({message}) => ..) the server's errors.
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
  };

  class ManagedClient {
    constructor(options = {}) {
      this.heartbeatInterval = options.heartbeatInterval ?? 10000;
      this.WebSocket = options.WebSocket ?? root.WebSocket;
      this.socket = null;
      this.user = null;
      this.handlers = new Map();
      this.pending = new Map(); // "join" / "leave" / "connected" -> [{resolve, reject}]
      this.heartbeat = null;
    }

    /** Opens the socket; resolves once it is open. */
    connect(url) {
      if (this.socket) this.close();
      return new Promise((resolve, reject) => {
        const socket = new this.WebSocket(url);
        this.socket = socket;
        let opened = false;
        socket.onopen = () => { opened = true; resolve(this); };
        socket.onmessage = (e) => this._receive(e.data);
        socket.onclose = (e) => {
          if (this.socket !== socket) return;
          this._closed(e.code, e.reason || CLOSE_REASONS[e.code] || "");
          if (!opened) reject(closeError(e.code, e.reason));
        };
      });
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

    /** Asks to join rooms; resolves with `{rooms, denied}`. */
    join(rooms) {
      const answer = this._await("join");
      this.send("join", { rooms: [].concat(rooms) });
      return answer;
    }

    /** Leaves rooms; resolves with `{rooms}` (the rooms actually left). */
    leave(rooms) {
      const answer = this._await("leave");
      this.send("leave", { rooms: [].concat(rooms) });
      return answer;
    }

    /** Sends an event; false when the socket is not open. */
    send(event, data) {
      if (!this.socket || this.socket.readyState !== 1) return false;
      const message = data === undefined ? { event } : { event, data };
      this.socket.send(JSON.stringify(message));
      return true;
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
      socket.close(1000, "Client disconnected");
      this._closed(1000, "Client disconnected");
    }

    get connected() {
      return !!this.socket && this.socket.readyState === 1 && !!this.user;
    }

    _await(event) {
      return new Promise((resolve, reject) => {
        if (!this.pending.has(event)) this.pending.set(event, []);
        this.pending.get(event).push({ resolve, reject });
      });
    }

    _receive(text) {
      let message;
      try { message = JSON.parse(text); } catch { return; }
      if (!message || typeof message.event !== "string") return;
      const waiting = this.pending.get(message.event);
      if (waiting && waiting.length) waiting.shift().resolve(message.data);
      this._emit(message.event, message.data, message);
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
