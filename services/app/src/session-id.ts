// Session ids: express-session's own kind (24 random bytes, base64url, 32 characters), and for a
// login a new id whose session key lands in the same Redis Cluster hash slot as the old one's,
// so the login's one Lua script can move the count across atomically (login.ts).
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";

// cluster-key-slot (ioredis' own) is the reference for a whole key's slot; it has no types.
const calculateSlot = createRequire(import.meta.url)("cluster-key-slot") as (key: string) => number;

/** The hash slot of a key, as Redis Cluster computes it (CRC16 of the key or of its {hash tag}). */
export const keySlot = (key: string): number => calculateSlot(key);

// Random bytes drawn for 256 ids at a time, as Node's randomUUID pools its own: one
// randomBytes(24) per id (an OpenSSL call each, ~15 µs here) was 6% of a new visitor's request.
const ID_BYTES = 24;
const POOL_BYTES = ID_BYTES * 256;
let pool = Buffer.alloc(0);
let used = 0;

/** A fresh session id, as express-session's default (uid-safe's uid(24)) makes it: 24 random bytes, base64url. */
export function newSessionId(): string {
  if (used === pool.length) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  used += ID_BYTES;
  return pool.toString("base64url", used - ID_BYTES, used);
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** CRC16-XMODEM (poly 0x1021), Redis Cluster's key hash, one byte at a time. */
const CRC_TABLE = Uint16Array.from({ length: 256 }, (_, i) => {
  let c = i << 8;
  for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  return c;
});
const crcStep = (crc: number, byte: number) => ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ byte) & 0xff]!;

/**
 * A fresh session id whose key `prefix + id` hashes to the same slot as `prefix + oldId`: 29
 * random characters (174 bits), then the first 3-character suffix of the 262,144 that gives that
 * slot (expected after ~16k tries of three table steps each, well under a millisecond).
 * Hand-written CRC because the search needs the CRC state after the random part, which
 * cluster-key-slot does not expose; keySlot() checks the result against it.
 */
export function sessionIdInSlotOf(oldId: string, prefix: string): string {
  const target = keySlot(prefix + oldId);
  for (;;) {
    const head = newSessionId().slice(0, 29);
    let crc = 0;
    for (const byte of Buffer.from(prefix + head)) crc = crcStep(crc, byte);
    for (let i = 0; i < 64 ** 3; i++) {
      const a = crcStep(crc, ALPHABET.charCodeAt(i >> 12));
      const b = crcStep(a, ALPHABET.charCodeAt((i >> 6) & 63));
      if ((crcStep(b, ALPHABET.charCodeAt(i & 63)) & 0x3fff) !== target) continue;
      const id = head + ALPHABET[i >> 12]! + ALPHABET[(i >> 6) & 63]! + ALPHABET[i & 63]!;
      // A key with braces would hash by its tag; ids are base64url, so this only guards the search.
      if (keySlot(prefix + id) === target) return id;
    }
  }
}
