// The page's behaviour: calls the JSON API, shows the count and which replica answered, and
// keeps a strip of the last requests. Plain browser JavaScript, no build step.

const STRIP_SIZE = 24;
const RETRY_DELAYS_MS = [250, 500, 1000]; // then give up: 4 attempts in under 2 s
// A login is retried for longer, to outlast a Redis failover (6 attempts in about 11 s when each gets a
// 503 after the app's command timeout; under 60 s even if each waits out the 8 s fetch timeout).
const LOGIN_RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000];
// How long the server keeps the record that replays a login whose answer was lost (REPLACED_TTL_SECONDS).
const LOGIN_RECORD_MS = 60_000;
const WATCH_EVERY_MS = 1000;
const WATCH_LIMIT = 120; // "Watch" stops by itself after two minutes

// Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), each with
// the text colour that keeps a contrast ratio of at least 4.5:1 on it.
const PALETTE = [
  { bg: "#0072B2", fg: "#ffffff" },
  { bg: "#E69F00", fg: "#111111" },
  { bg: "#009E73", fg: "#111111" },
  { bg: "#CC79A7", fg: "#111111" },
  { bg: "#56B4E9", fg: "#111111" },
  { bg: "#D55E00", fg: "#111111" },
  { bg: "#F0E442", fg: "#111111" },
  { bg: "#6B4C9A", fg: "#ffffff" },
];
const NO_REPLICA = { bg: "#5b6470", fg: "#ffffff" };

const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const ui = {
  count: $("count"),
  servedBy: $("served-by"),
  session: $("session"),
  increment: $("increment"),
  refresh: $("refresh"),
  watch: $("watch"),
  destroy: $("destroy"),
  status: $("status"),
  error: $("error"),
  strip: $("strip"),
  stripSize: $("strip-size"),
  legend: $("legend"),
  accountChecking: $("account-checking"),
  accountUnavailable: $("account-unavailable"),
  loginForm: $("login-form"),
  loginName: $("login-name"),
  loggedIn: $("logged-in"),
  userName: $("user-name"),
  logout: $("logout"),
};

/** replica name -> { colour, served, lastSeq } in order of first appearance. */
const replicas = new Map();
let seq = 0; // requests recorded so far

function colourFor(name) {
  if (!name) return NO_REPLICA;
  let entry = replicas.get(name);
  if (!entry) {
    // "app-3" gets colour 3 whatever order replicas answer in; other names (container ids) by arrival.
    const n = /(\d+)$/.exec(name);
    const index = n ? Number(n[1]) - 1 : replicas.size;
    entry = { colour: PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length], served: 0, lastSeq: 0 };
    replicas.set(name, entry);
  }
  return entry.colour;
}

function paint(el, colour) {
  el.style.setProperty("--bg", colour.bg);
  el.style.setProperty("--fg", colour.fg);
}

/** A fresh Idempotency-Key: 128 random bits. crypto.randomUUID needs a secure context; this does not. */
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function say(message) {
  ui.status.textContent = message;
}

function fail(message) {
  ui.error.textContent = message;
}

function record({ method, path, status, replica, ms, requestId, attempt }) {
  const colour = colourFor(replica);
  seq++;
  if (replica) {
    const entry = replicas.get(replica);
    entry.served++;
    entry.lastSeq = seq;
  }
  const li = document.createElement("li");
  li.className = "tile";
  if (status === 0 || status >= 500) li.classList.add("failed");
  paint(li, colour);
  const who = document.createElement("span");
  who.className = "tile-replica";
  who.textContent = replica ?? (status === 0 ? "no reply" : "nginx");
  const what = document.createElement("span");
  what.className = "tile-status";
  what.textContent = `${method === "DELETE" ? "DEL" : method} ${status || "—"}`;
  li.append(who, what);
  const detail =
    `${method} ${path} → ${status || "network error"}${replica ? ` from ${replica}` : ""} in ${Math.round(ms)} ms` +
    `${attempt > 1 ? `, attempt ${attempt}` : ""}${requestId ? `, request id ${requestId}` : ""}`;
  li.title = detail;
  li.setAttribute("aria-label", detail);
  li.dataset.replica = replica ?? "";
  ui.strip.prepend(li);
  while (ui.strip.children.length > STRIP_SIZE) ui.strip.lastElementChild.remove();
  renderLegend();
}

function renderLegend() {
  const items = [...replicas.entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  ui.legend.replaceChildren(
    ...items.map(([name, { colour, served, lastSeq }]) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.setAttribute("aria-hidden", "true");
      paint(swatch, colour);
      const label = document.createElement("span");
      label.textContent = `${name}: ${served} ${served === 1 ? "request" : "requests"}`;
      li.append(swatch, label);
      // Round-robin visits every replica once per cycle; one that sat out a whole cycle and
      // more is probably down (or nginx is skipping it after a failure).
      const quietFor = seq - lastSeq;
      if (quietFor > items.length) {
        const quiet = document.createElement("span");
        quiet.className = "quiet";
        quiet.textContent = `(none of the last ${quietFor})`;
        li.append(quiet);
      }
      return li;
    }),
  );
}

/** No answer (status 0), 502, 503 or 504: the request may or may not have been applied. */
const indeterminate = (status) => status === 0 || status === 502 || status === 503 || status === 504;

/**
 * One API call, recorded in the strip. With `retry`, a network error, timeout, 502, 503 or 504
 * is sent again with the same headers (so the same Idempotency-Key), after each of `delays`: the
 * server applies a key once, so the retry cannot count twice.
 */
async function call(method, path, { body, key, retry = false, delays = RETRY_DELAYS_MS } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (key) headers["Idempotency-Key"] = key;
  for (let attempt = 1; ; attempt++) {
    const started = performance.now();
    let res;
    let data = null;
    let networkError;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
        signal: AbortSignal.timeout(8000),
      });
      data = await res.json().catch(() => null);
    } catch (err) {
      networkError = err;
    }
    const status = res?.status ?? 0;
    record({
      method,
      path,
      status,
      attempt,
      replica: res?.headers.get("X-Replica") ?? data?.replica ?? null,
      requestId: res?.headers.get("X-Request-ID"),
      ms: performance.now() - started,
    });
    if (retry && indeterminate(status) && attempt <= delays.length) {
      say(
        `${networkError ? "No answer" : `Got ${status}`}; retrying with the same Idempotency-Key (attempt ` +
          `${attempt + 1})…`,
      );
      await sleep(delays[attempt - 1]);
      continue;
    }
    if (networkError)
      throw new Error(
        `The request failed ` +
          `(${networkError.name === "TimeoutError" ? "no answer in 8 s" : "network error"}); check that the ` +
          `cluster is up.`,
      );
    return { res, data };
  }
}

function show(data, res) {
  if (typeof data?.count === "number") ui.count.textContent = String(data.count);
  const replica = res.headers.get("X-Replica") ?? data?.replica;
  if (replica) {
    ui.servedBy.textContent = replica;
    ui.servedBy.dataset.empty = "false";
    paint(ui.servedBy, colourFor(replica));
  }
  if (data && "session" in data) ui.session.textContent = data.session ?? "none yet";
}

function problem(res, data) {
  return data?.message ? `${data.message} (${res.status} ${data.error})` : `The server answered ${res.status}.`;
}

// Actions run one at a time, in click order, so the count shown is always the latest.
let queue = Promise.resolve();
let queued = 0;
function enqueue(action) {
  queued++;
  ui.increment.setAttribute("aria-busy", "true");
  queue = queue.then(async () => {
    try {
      fail("");
      await action();
    } catch (err) {
      fail(err.message);
    } finally {
      if (--queued === 0) ui.increment.removeAttribute("aria-busy");
    }
  });
  return queue;
}

// An increment whose outcome stayed unknown through its retries (Redis may apply it later) keeps its
// key: the next click sends that key again, so it is counted once whatever happened.
let pendingIncrementKey = null;

async function increment() {
  pendingIncrementKey ??= newKey();
  const { res, data } = await call("POST", "/api/counter", { key: pendingIncrementKey, retry: true });
  if (indeterminate(res.status))
    return fail(`${problem(res, data)} Increment sends it again with the same key: it counts once.`);
  pendingIncrementKey = null;
  if (!res.ok) return fail(problem(res, data));
  show(data, res);
  // The count itself is announced (aria-live); say only what it does not show.
  say(
    res.headers.get("Idempotent-Replayed") === "true"
      ? "A retry was answered from the stored result: counted once."
      : "",
  );
}

async function refresh() {
  const { res, data } = await call("GET", "/api/session", { retry: true });
  if (!res.ok) return fail(problem(res, data));
  show(data, res);
}

async function destroy() {
  const { res, data } = await call("DELETE", "/api/session", { retry: true });
  if (!res.ok) return fail(problem(res, data));
  ui.count.textContent = "0";
  ui.session.textContent = "none yet";
  say(
    data.destroyed
      ? "Session destroyed; the next increment starts a new one at 1."
      : "There was no session to destroy.",
  );
  await account();
}

// --- login (POST /api/login {name}, POST /api/logout, GET /api/me); hidden when absent ---

function showAccount(state, name) {
  ui.accountChecking.hidden = true;
  ui.accountUnavailable.hidden = state !== "unavailable";
  ui.loginForm.hidden = state !== "out";
  ui.loggedIn.hidden = state !== "in";
  if (state === "in") ui.userName.textContent = name;
}

async function account() {
  let res;
  let data;
  try {
    ({ res, data } = await call("GET", "/api/me"));
  } catch {
    return showAccount("unavailable");
  }
  // The app's own 404 (no such route) means this build has no login; 401 means logged out.
  if (res.status === 404 && (data === null || data.error === "not_found")) return showAccount("unavailable");
  const name = data?.user?.name ?? data?.name ?? null;
  showAccount(res.ok && typeof name === "string" ? "in" : "out", name);
}

// A login whose answer was lost (Redis may have applied it after the app answered 503) is replayed
// only to the old cookie with the same Idempotency-Key, for LOGIN_RECORD_MS: so its key is kept
// until a definite answer, and the next login with the same name sends it again. Kept in the tab's
// sessionStorage, not a variable, because reloading is what a user does after an error. Only an
// entry this page could have written is used (its key's format, at most LOGIN_RECORD_MS to go), so
// a script injected once cannot plant a key that waits for the next login.
const PENDING_LOGIN = "pending-login";
const KEY_FORMAT = /^[0-9a-f]{32}$/;

function loginKeyFor(name) {
  try {
    const pending = JSON.parse(sessionStorage.getItem(PENDING_LOGIN) ?? "null");
    const left = pending?.until - Date.now();
    if (pending?.name === name && KEY_FORMAT.test(pending.key) && left > 0 && left <= LOGIN_RECORD_MS) return pending;
  } catch {
    // No storage (blocked by the browser) or a value this page did not write: no pending login.
  }
  return { name, key: newKey(), until: Date.now() + LOGIN_RECORD_MS };
}

function keepLogin(pending) {
  try {
    if (pending) sessionStorage.setItem(PENDING_LOGIN, JSON.stringify(pending));
    else sessionStorage.removeItem(PENDING_LOGIN);
  } catch {
    // Without storage the key is not kept: the next login is a new one.
  }
}

async function login() {
  const name = ui.loginName.value.trim();
  if (!name) {
    ui.loginName.focus();
    return fail("Enter a name to log in.");
  }
  // Another name makes another login: the key kept for the previous name is dropped.
  const pending = loginKeyFor(name);
  keepLogin(pending);
  const maybeApplied = "The login may have gone through: log in again with the same name within a minute.";
  let res;
  let data;
  try {
    ({ res, data } = await call("POST", "/api/login", {
      body: { name },
      key: pending.key,
      retry: true,
      delays: LOGIN_RETRY_DELAYS_MS,
    }));
  } catch (err) {
    throw new Error(`${err.message} ${maybeApplied}`, { cause: err });
  }
  if (indeterminate(res.status)) return fail(`${problem(res, data)} ${maybeApplied}`);
  // Only an answer about this login ends it: applied (2xx), or refused because of the session or
  // the key (409, 422). A 429, a 500 or a 400 says nothing of an earlier attempt: the key is kept.
  if (res.ok || res.status === 409 || res.status === 422) keepLogin(undefined);
  if (res.status === 409 && data?.error === "session_replaced") {
    // Another login from this browser replaced the session: another tab's (the browser now holds its
    // cookie) or one whose answer was lost and whose key this page no longer has.
    await account();
    if (!ui.loggedIn.hidden)
      return say(`Another login from this browser got there first: logged in as ${ui.userName.textContent}.`);
    return fail(
      "An earlier login from this browser went through but its answer was lost, and its session is reached " +
        "only by logging in again from the tab that sent it, with the same name, within a minute. Otherwise " +
        "log in again after a minute: that starts a new session at 0.",
    );
  }
  if (!res.ok) return fail(problem(res, data));
  say(`Logged in as ${name}.`);
  await account();
  await refresh();
  ui.logout.focus();
}

async function logout() {
  const { res, data } = await call("POST", "/api/logout");
  if (!res.ok) return fail(problem(res, data));
  say("Logged out.");
  await account();
  await refresh();
  ui.loginName.focus();
}

// --- watch: one GET a second, to see round-robin without clicking ---

let watching;
function toggleWatch() {
  if (watching) {
    clearInterval(watching);
    watching = undefined;
    ui.watch.setAttribute("aria-pressed", "false");
    return say("Stopped watching.");
  }
  let left = WATCH_LIMIT;
  ui.watch.setAttribute("aria-pressed", "true");
  say("Watching: one request a second for two minutes.");
  watching = setInterval(() => {
    if (--left < 0) return toggleWatch();
    // Skip a beat rather than pile up requests behind a slow answer.
    if (queued === 0) enqueue(refresh);
  }, WATCH_EVERY_MS);
}

ui.stripSize.textContent = String(STRIP_SIZE);
ui.increment.addEventListener("click", () => enqueue(increment));
ui.refresh.addEventListener("click", () => enqueue(refresh));
ui.destroy.addEventListener("click", () => enqueue(destroy));
ui.watch.addEventListener("click", toggleWatch);
ui.loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  enqueue(login);
});
ui.logout.addEventListener("click", () => enqueue(logout));

enqueue(refresh);
enqueue(account);
