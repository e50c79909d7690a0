// Rate limits at ingest, through the real Workers Rate Limiting binding (wrangler.jsonc). Its
// local window is fixed per wall-clock minute: each case runs again, on fresh keys, if it
// happened to straddle a minute boundary, so no outcome depends on when the test started.
import { describe, expect, it } from "vitest";
import { networkKey } from "../src/limits";
import { expectError, makeEvent, post, postEvent, rowCount, uuid4 } from "./helpers";

const INSTALL_LIMIT = 30;
const NETWORK_LIMIT = 600;

/**
 * Run `attempt` (on fresh keys each time) until the limit held in one window. The local limiter
 * counts per wall-clock minute, so an attempt that straddles a minute boundary sees its count
 * start afresh; three straddles in a row of a few-second attempt cannot happen, but a limiter
 * that does not limit fails all three.
 */
async function inOneWindow(attempt: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 3; i++) if (await attempt()) return;
  throw new Error("the limit did not hold in three attempts");
}

/** An address of TEST-NET-2 (RFC 5737): the other tests post from TEST-NET-3, so no key is shared. */
function ownNetwork(): string {
  const byte = () => Math.floor(Math.random() * 256);
  return `198.51.${byte()}.${byte()}`;
}

function postFrom(network: string, event = makeEvent()): Promise<Response> {
  return post(JSON.stringify(event), { "CF-Connecting-IP": network });
}

describe("per install_id", () => {
  it(`accepts ${INSTALL_LIMIT} events of one install a minute, then 429 with Retry-After, nothing stored`, async () => {
    await inOneWindow(async () => {
      const install_id = uuid4();
      const before = await rowCount();
      for (let i = 0; i < INSTALL_LIMIT; i++) expect((await postEvent(makeEvent({ install_id }))).status).toBe(202);
      const refused = await postEvent(makeEvent({ install_id }));
      if (refused.status === 202) return false; // a new minute began meanwhile: again, on a new install
      expect(refused.headers.get("Retry-After")).toBe("60");
      await expectError(refused, 429, "rate_limited");
      expect(await rowCount()).toBe(before + INSTALL_LIMIT);
      expect((await postEvent(makeEvent())).status).toBe(202); // another install is not held back
      return true;
    });
  });
});

describe("per client network", () => {
  it(`accepts ${NETWORK_LIMIT} events a minute from one IPv6 /64, whatever the addresses, then 429`, async () => {
    await inOneWindow(async () => {
      const prefix = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:7`;
      for (let i = 0; i < NETWORK_LIMIT; i++) {
        const host = `${prefix}:${(i % 0xffff).toString(16)}::${(i % 7) + 1}`; // a new address each time
        expect((await postFrom(host)).status).toBe(202);
      }
      const refused = await postFrom(`${prefix}::beef`);
      if (refused.status === 202) return false;
      await expectError(refused, 429, "rate_limited");
      // Before the body is read: an invalid body from that network is refused the same way.
      await expectError(await post("{not json", { "CF-Connecting-IP": `${prefix}::1` }), 429, "rate_limited");
      expect((await postFrom(`${prefix}1::1`)).status).toBe(202); // the next /64 is another network
      expect((await postFrom(ownNetwork())).status).toBe(202);
      return true;
    });
  }, 120_000);

  it("an IPv4 address is its own network", async () => {
    await inOneWindow(async () => {
      const network = ownNetwork();
      for (let i = 0; i < NETWORK_LIMIT; i++) expect((await postFrom(network)).status).toBe(202);
      const refused = await postFrom(network);
      if (refused.status === 202) return false;
      await expectError(refused, 429, "rate_limited");
      return true;
    });
  }, 120_000);
});

describe("networkKey", () => {
  it.each([
    ["203.0.113.7", "203.0.113.7"],
    ["2001:DB8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["2001:0db8:0001:0002::", "2001:db8:1:2::/64"],
    ["::1", "0:0:0:0::/64"],
    ["::ffff:192.0.2.1", "0:0:0:0::/64"],
    ["", null],
    ["not an address", null],
    ["2001:db8", null],
    ["__proto__", null],
  ])("%s -> %s", (address, key) => {
    expect(networkKey(address)).toBe(key);
  });

  it("no address (a request that did not pass Cloudflare's edge) has no network limit", () => {
    expect(networkKey(null)).toBeNull();
  });
});
