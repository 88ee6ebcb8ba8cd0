// GraphQL over HTTP (queries, mutations) and over WebSocket (subscriptions, graphql-transport-ws).
//
// The socket client is small on purpose: connection_init carries the session token (browsers cannot
// set headers on a WebSocket), ping/pong keeps proxies from idling it out, and a dropped
// connection is reopened with exponential backoff. Every live subscription is sent again on
// the new socket and its `onReconnect` hook runs, so a view can re-query what it missed while
// it was away (catch-up) before new `next` messages arrive.

import { authHeaders, getKey } from "./session.js";

export class GraphQLError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
  }
}

export class AuthError extends Error {}

export const UNREACHABLE =
  "The smokehouse server cannot be reached. Check that it is running and that this device is on its network; this page tries again when you reload it.";

/** fetch, with the one error a person can act on when the server is not there. */
export async function request(url, init) {
  try {
    return await fetch(url, init);
  } catch {
    throw new Error(UNREACHABLE);
  }
}

export async function gql(query, variables = {}, key = getKey()) {
  const response = await request("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", ...authHeaders(key) },
    body: JSON.stringify({ query, variables }),
  });
  if (response.status === 401) throw new AuthError("Missing, invalid or expired session");
  const body = await response.json().catch(() => null);
  if (!body) throw new Error(`GraphQL answered HTTP ${response.status}`);
  if (body.errors && body.errors.length) throw new GraphQLError(body.errors);
  return body.data;
}

const PING_MS = 15000;
const MAX_BACKOFF_MS = 10000;

class SocketClient {
  constructor() {
    this.ws = null;
    this.acked = false;
    this.nextId = 1;
    this.subs = new Map(); // id → {payload, sink}
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.everConnected = false;
    this.listeners = new Set();
    this.state = "idle";
  }

  onState(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  setState(state) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/graphql`;
  }

  connect() {
    if (this.ws || this.subs.size === 0) return;
    clearTimeout(this.timer);
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url(), "graphql-transport-ws");
    this.ws = ws;
    this.acked = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "connection_init", payload: authHeaders() }));
    };
    ws.onmessage = (event) => this.receive(ws, JSON.parse(event.data));
    ws.onclose = (event) => this.closed(ws, event);
    ws.onerror = () => {}; // onclose follows and reconnects
  }

  receive(ws, message) {
    if (message.type === "connection_ack") {
      const reconnected = this.everConnected;
      this.acked = true;
      this.everConnected = true;
      this.attempt = 0;
      this.setState("live");
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ type: "ping" }), PING_MS);
      for (const [id, sub] of this.subs) {
        if (reconnected && sub.sink.onReconnect) sub.sink.onReconnect();
        this.send({ id, type: "subscribe", payload: sub.payload });
      }
    } else if (message.type === "ping") {
      this.send({ type: "pong" });
    } else if (message.type === "next") {
      const sub = this.subs.get(message.id);
      if (!sub) return;
      if (message.payload.errors) sub.sink.error?.(new GraphQLError(message.payload.errors));
      else sub.sink.next(message.payload.data);
    } else if (message.type === "error") {
      const sub = this.subs.get(message.id);
      this.subs.delete(message.id);
      sub?.sink.error?.(new GraphQLError(message.payload));
    } else if (message.type === "complete") {
      const sub = this.subs.get(message.id);
      this.subs.delete(message.id);
      sub?.sink.complete?.();
    }
  }

  closed(ws, event) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.acked = false;
    clearInterval(this.pinger);
    if (event.code === 4403 || event.code === 4401) {
      this.setState("unauthorized");
      for (const sub of this.subs.values()) sub.sink.error?.(new AuthError(event.reason));
      this.subs.clear();
      return;
    }
    if (this.subs.size === 0) {
      this.setState("idle");
      return;
    }
    this.setState("reconnecting");
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    this.subs.set(id, { payload: { query, variables }, sink });
    if (this.acked) this.send({ id, type: "subscribe", payload: { query, variables } });
    else this.connect();
    return () => {
      if (!this.subs.delete(id)) return;
      this.send({ id, type: "complete" });
      if (this.subs.size === 0) this.close();
    };
  }

  /** Drop the socket (tests, logout); live subscriptions reconnect unless `forget`. */
  close(forget = false) {
    if (forget) this.subs.clear();
    const ws = this.ws;
    if (ws) ws.close(1000, "bye");
  }
}

export const socket = new SocketClient();

/** Subscribe; `sink` has next(data), error(err), complete(), onReconnect(). Returns unsubscribe. */
export function subscribe(query, variables, sink) {
  return socket.subscribe(query, variables, sink);
}
