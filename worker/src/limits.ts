// Rate limits at ingest, before any D1 work: Cloudflare's Workers Rate Limiting binding, one
// limiter per install_id and one per client network. The address is only the limiter's key, held
// in memory by Cloudflare for the period: never stored, never logged, never part of an event.

/** The limiters' period (wrangler.jsonc, `simple.period`): Retry-After says at most this long. */
export const RATE_LIMIT_PERIOD_SECONDS = 60;

/**
 * The client's network as a limiter key: an IPv4 address as is, an IPv6 address as its /64
 * (one host holds a whole /64, so a per-address key would be no limit at all). Null when there
 * is no usable address (a request that did not come through Cloudflare's edge).
 */
export function networkKey(address: string | null): string | null {
  if (address === null) return null;
  const text = address.trim().toLowerCase();
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(text)) return text;
  if (!/^[0-9a-f:.]+$/.test(text) || !text.includes(":")) return null;
  const [head = "", tail] = text.split("::", 2);
  const groups = head === "" ? [] : head.split(":");
  if (tail !== undefined) {
    // "::" stands for as many zero groups as are missing; only the first four matter here.
    const rest = tail === "" ? [] : tail.split(":");
    while (groups.length + rest.length < 8) groups.push("0");
    groups.push(...rest);
  }
  const prefix = groups.slice(0, 4);
  if (prefix.length < 4 || prefix.some((group) => !/^[0-9a-f]{1,4}$/.test(group))) return null;
  return `${prefix.map((group) => group.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

/** True when `key` is over its limit now. A limiter that fails lets the event through: losing
 * real events to a limiter outage would be worse than a minute of unlimited ingest. */
export async function overLimit(limiter: RateLimit | undefined, key: string): Promise<boolean> {
  if (limiter === undefined) return false;
  try {
    return !(await limiter.limit({ key })).success;
  } catch {
    return false;
  }
}
