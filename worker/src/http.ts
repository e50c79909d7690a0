// Responses: JSON everywhere, and one error shape {"ok": false, "error": {code, message}}.

export type ErrorCode =
  | "not_found"
  | "method_not_allowed"
  | "unsupported_media_type"
  | "payload_too_large"
  | "invalid_json"
  | "invalid_event"
  | "invalid_parameter"
  | "unauthorized"
  | "rate_limited"
  | "internal_error";

const JSON_HEADERS = {
  "Content-Type": "application/json; charset=utf-8",
  "Cache-Control": "no-store",
};

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

export function csv(body: string, filename: string): Response {
  return new Response(body, {
    headers: {
      "Content-Type": "text/csv; charset=utf-8",
      "Content-Disposition": `attachment; filename="${filename}"`,
      "Cache-Control": "no-store",
    },
  });
}

export function errorResponse(
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json({ ok: false, error: { code, message } }, status, headers);
}

export function methodNotAllowed(allow: string[]): Response {
  return errorResponse(405, "method_not_allowed", `use ${allow.join(" or ")}`, {
    Allow: allow.join(", "),
  });
}

/** `application/json`, with an optional `charset=utf-8`; nothing else. */
export function isJsonContentType(header: string | null): boolean {
  if (header === null) return false;
  const [mediaType, ...params] = header.split(";").map((part) => part.trim().toLowerCase());
  if (mediaType !== "application/json") return false;
  return params.every((param) => {
    const [name, value] = param.split("=").map((part) => part.trim());
    return name !== "charset" || value === "utf-8" || value === '"utf-8"';
  });
}

/**
 * The body as bytes, or null once it passes `limit`: the declared length is
 * checked first, and a chunked body is cut off as soon as it is too large.
 */
export async function readLimited(request: Request, limit: number): Promise<Uint8Array | null> {
  const declared = request.headers.get("Content-Length");
  if (declared !== null && Number(declared) > limit) return null;
  if (request.body === null) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

/**
 * Every answer: no content sniffing (a JSON or CSV answer is never run as a page), and HTTPS
 * only for a year (browsers ignore it over plain HTTP, as in local runs).
 */
export function withSecurityHeaders(response: Response): Response {
  const secured = new Response(response.body, response);
  secured.headers.set("X-Content-Type-Options", "nosniff");
  secured.headers.set("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
  return secured;
}
