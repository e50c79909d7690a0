// The contract: contract/event.schema.json, bundled at build time so it cannot drift.
import { type OutputUnit, type Schema, Validator } from "@cfworker/json-schema";
import schema from "../../contract/event.schema.json";
import normalization from "../../contract/normalization.json";

export const EVENT_FIELDS = [
  "install_id",
  "session_id",
  "version",
  "python",
  "os",
  "arch",
  "adapter",
  "timestamp",
] as const;

/** The fields the reports group by; column names come from here, never from a request. */
export const DIMENSIONS = ["version", "python", "os", "arch", "adapter"] as const;
export type Dimension = (typeof DIMENSIONS)[number];

export type TelemetryEvent = {
  install_id: string;
  session_id: string;
  version: string;
  python: string;
  os: string;
  arch: string;
  adapter: string;
  timestamp: number;
};

export const MAX_BODY_BYTES = 1024;

const validator = new Validator(schema as Schema, "2020-12", false);

export type Validation = { ok: true; event: TelemetryEvent } | { ok: false; message: string };

const ARCH_ALIASES: Record<string, string> = normalization.arch_aliases;
const OS_KEEPING_DIGITS = new Set(normalization.os_keeping_trailing_digits);

/** The one name of an arch that released SDKs send raw (`amd64`, `aarch64`): contract/normalization.json. */
export function normalizeArch(arch: string): string {
  return (Object.hasOwn(ARCH_ALIASES, arch) && ARCH_ALIASES[arch]) || arch;
}

/** The `sys.platform` family: `freebsd14` -> `freebsd`; `win32` keeps its digits. */
export function normalizeOs(os: string): string {
  if (OS_KEEPING_DIGITS.has(os)) return os;
  const family = os.replace(/[0-9]+$/, "");
  return family === "" ? os : family;
}

/** Aliases first (old and new clients count as one), then the contract decides. */
function normalizeAliases(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const event = { ...(value as Record<string, unknown>) };
  if (typeof event.arch === "string") event.arch = normalizeArch(event.arch);
  if (typeof event.os === "string") event.os = normalizeOs(event.os);
  return event;
}

/** Validate a parsed body against the schema; the message names the field and the rule. */
export function validateEvent(parsed: unknown): Validation {
  const value = normalizeAliases(parsed);
  const result = validator.validate(value);
  if (result.valid) {
    return { ok: true, event: value as TelemetryEvent };
  }
  // Wrapper errors ("properties", the boolean `false` schema) repeat what a sibling says better.
  const error = result.errors.find((e) => e.keyword !== "properties" && e.keyword !== "false");
  return { ok: false, message: error === undefined ? "the event does not match the contract" : describe(error) };
}

function describe(error: OutputUnit): string {
  const named = /"([^"]*)"/.exec(error.error)?.[1] ?? "";
  switch (error.keyword) {
    case "required":
      return `${named}: required`;
    case "additionalProperties":
      return `${named}: not a field of the event (additionalProperties: false)`;
    case "type":
      if (error.instanceLocation === "#") return "event: must be a JSON object (type)";
  }
  const field = error.instanceLocation.replace(/^#\/?/, "");
  const rule = (schema.properties as Record<string, Record<string, unknown>>)[field]?.[error.keyword];
  return `${field}: must satisfy ${error.keyword} ${JSON.stringify(rule)}`;
}
