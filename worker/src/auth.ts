// GET /v1/stats* access: `Authorization: Bearer <STATS_TOKEN>`, compared in constant time.

const encoder = new TextEncoder();

async function digest(value: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(value));
}

/** True only for the configured token; no token configured means no access at all. */
export async function isAuthorized(header: string | null, token: string | undefined): Promise<boolean> {
  if (!token || header === null) return false;
  const match = /^bearer +(\S+) *$/i.exec(header);
  if (match === null || match[1] === undefined) return false;
  // Hashing first makes the lengths equal, so neither length nor content leaks through timing.
  const [given, expected] = await Promise.all([digest(match[1]), digest(token)]);
  return crypto.subtle.timingSafeEqual(given, expected);
}
