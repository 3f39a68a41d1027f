// The session id a test's visitor holds, to find that session's keys in Redis. Read from the
// cookie without checking its signature: the app checks it; a test only needs the id.

/** The id in a `sid=s%3A<id>.<signature>` cookie pair; throws when the visitor holds no cookie. */
export function sessionIdOf(cookie: string | undefined): string {
  if (!cookie) throw new Error("the visitor has no session cookie");
  const value = decodeURIComponent(cookie.slice(cookie.indexOf("=") + 1));
  return value.slice(2, value.lastIndexOf("."));
}
