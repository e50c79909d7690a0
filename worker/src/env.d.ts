// The bindings wrangler.jsonc gives the Worker.
declare namespace Cloudflare {
  interface Env {
    DB: D1Database;
    /** Events per install_id per minute (wrangler.jsonc `ratelimits`). */
    INSTALL_RATE_LIMIT?: RateLimit;
    /** Events per client network (IPv4 address, IPv6 /64) per minute. */
    NETWORK_RATE_LIMIT?: RateLimit;
    /** Bearer token for GET /v1/stats*: a Worker secret. Unset means no one may read stats. */
    STATS_TOKEN?: string;
    /** Days raw events and install ids are kept; an integer >= 31. */
    RETENTION_DAYS?: string;
    /** "on": serve GET /public and /v1/public to anyone; anything else: 404. */
    PUBLIC_DASHBOARD?: string;
  }
}

interface Env extends Cloudflare.Env {}

declare namespace Cloudflare {
  interface GlobalProps {
    mainModule: typeof import("./index");
  }
}
