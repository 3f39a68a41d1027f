// App settings for clusters started to carry load: every load client is 127.0.0.1 and makes
// hundreds of sessions, each with thousands of Idempotency-Keys, on purpose; the app's
// per-address new-session limit and per-session key cap (on by default) would refuse them.
export const LOAD_APP_ENV: Readonly<Record<string, string>> = Object.freeze({
  NEW_SESSION_LIMIT: "0",
  IDEMPOTENCY_MAX_KEYS: "0",
});
