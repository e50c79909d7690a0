// GET /dashboard (maintainers, with the stats token) and GET /public (anyone, when PUBLIC_DASHBOARD
// is on): one HTML page each, its script and stylesheet served beside it from the Worker. No build
// step and no request to anywhere but this origin: the Content-Security-Policy says so.
import { CLIENT_JS } from "./script";
import { STYLE_CSS } from "./style";

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const PAGE_HEADERS = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
};

const SECTIONS: [string, string][] = [
  ["humans", "Real humans"],
  ["python", "Python versions"],
  ["adapter", "Adapters"],
  ["version", "SDK versions"],
  ["platform", "Platforms"],
  ["cohorts", "Do new installs come back?"],
];

const PUBLIC_SECTIONS: [string, string][] = [
  ["humans", "Installs per week"],
  ["python", "Python versions"],
  ["adapter", "Adapters"],
  ["version", "SDK versions"],
  ["os", "Operating systems"],
  ["arch", "CPU architectures"],
];

export type PageMode = "private" | "public";

export function page(mode: PageMode): Response {
  const sections = (mode === "private" ? SECTIONS : PUBLIC_SECTIONS)
    .map(
      ([id, title]) =>
        `<section id="${id}" aria-labelledby="${id}-title"><h2 id="${id}-title">${title}</h2>` +
        `<div class="body"><p class="empty">Loading…</p></div></section>`,
    )
    .join("\n");
  const intro =
    mode === "private"
      ? `<form id="login" hidden>
  <label for="token">Stats token</label>
  <input id="token" name="token" type="password" autocomplete="off" required>
  <button type="submit">Show the figures</button>
  <p id="login-error" role="alert"></p>
</form>`
      : `<p class="lede">Anonymous usage of the AgentSonar SDK, per closed ISO week.
<strong id="rounding">Every figure is rounded to the nearest 10</strong>, a value used by fewer
than 10 installs is not named (it is counted in “other”), and a week with fewer than 50 active
installs shows no breakdown: so that no figure, nor the difference of two, gives a small group
of machines away. <a href="https://www.agent-sonar.com/telemetry">What is collected</a>.</p>`;
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${mode === "private" ? "AgentSonar telemetry" : "AgentSonar usage, in public"}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body data-mode="${mode}">
<header>
  <h1>${mode === "private" ? "AgentSonar telemetry" : "AgentSonar usage"}</h1>
  <p id="as-of" aria-live="polite"></p>
  ${mode === "private" ? '<button id="sign-out" type="button" hidden>Forget the token</button>' : ""}
</header>
<main>
${intro}
<p id="status" role="status"></p>
<div id="sections"${mode === "private" ? " hidden" : ""}>
${sections}
</div>
</main>
</body>
</html>
`;
  return new Response(html, { headers: { "Content-Type": "text/html; charset=utf-8", ...PAGE_HEADERS } });
}

export function script(): Response {
  return new Response(CLIENT_JS, { headers: { "Content-Type": "text/javascript; charset=utf-8", ...PAGE_HEADERS } });
}

// A sonar ping: the page's icon, from this origin (so the browser asks nowhere else, not even /favicon.ico).
const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="14" fill="#2456c9"/>' +
  '<circle cx="16" cy="16" r="8" fill="none" stroke="#fff" stroke-width="2.5"/><circle cx="16" cy="16" r="3" fill="#fff"/></svg>';

export function icon(): Response {
  return new Response(ICON_SVG, { headers: { "Content-Type": "image/svg+xml", ...PAGE_HEADERS } });
}

export function stylesheet(): Response {
  return new Response(STYLE_CSS, { headers: { "Content-Type": "text/css; charset=utf-8", ...PAGE_HEADERS } });
}
