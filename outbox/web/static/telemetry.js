// Helios telemetry for the browser: count UI actions by name, send them in small batches.
//
//   import { trackUIAction } from "/telemetry/static/telemetry.js";
//   button.addEventListener("click", () => trackUIAction("bulk_edit"));
//
// Counts are kept in memory as {name: count} and sent to POST /api/telemetry/ui-actions
// a few seconds after the first one, and when the page is hidden or left
// (navigator.sendBeacon, else fetch with keepalive). While telemetry is off nothing at
// all happens: no counting, no timer, no request. The state comes from the <html>
// element's data-helios-telemetry attribute ("on", "local" or "off"; see
// outbox.web.html_attributes), else from GET /api/settings/telemetry; until it is
// known, counts wait in memory and are dropped if it turns out to be off.
// Where the framework asks for a CSRF token (Django), the <html> element names the
// header (data-helios-csrf-header) and the token (data-helios-csrf-token, or the cookie
// data-helios-csrf-cookie read at send time); batches then go by fetch with keepalive,
// since sendBeacon cannot send a header.
// No function here throws.

const NAME = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;
const MAX_NAME_LENGTH = 64;
const MAX_NAMES_PER_REQUEST = 50; // the server's limits (outbox.web.validation)
const MAX_COUNT_PER_REQUEST = 1000;
const MAX_PENDING_NAMES = 200; // memory bound: further new names are ignored until a flush

const data = (typeof document !== "undefined" && document.documentElement.dataset) || {};
const config = {
  endpoint: data.heliosTelemetryEndpoint || "/api/telemetry/ui-actions",
  settingsUrl: data.heliosTelemetrySettings || "/api/settings/telemetry",
  insightsUrl: data.heliosInsightsUrl || "",
  flushMs: Number(data.heliosTelemetryFlushMs) > 0 ? Number(data.heliosTelemetryFlushMs) : 5000,
  csrfHeader: data.heliosCsrfHeader || "",
  csrfToken: data.heliosCsrfToken || "",
  csrfCookie: data.heliosCsrfCookie || "",
};

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return "";
}

/** The headers a write to the telemetry routes needs here: the CSRF token, if any. */
export function writeHeaders() {
  const headers = {};
  try {
    if (!config.csrfHeader) return headers;
    const token = (config.csrfCookie && cookie(config.csrfCookie)) || config.csrfToken;
    if (token) headers[config.csrfHeader] = token;
  } catch (_) {
    /* never throw */
  }
  return headers;
}

let mode = ["on", "local", "off"].includes(data.heliosTelemetry) ? data.heliosTelemetry : "unknown";
let pending = new Map();
let timer = 0;

const collecting = () => mode === "on" || mode === "local";

function announce() {
  try {
    window.dispatchEvent(new CustomEvent("helios-telemetry-change", { detail: { mode } }));
  } catch (_) {
    /* never throw */
  }
}

function learnState() {
  if (mode !== "unknown") return Promise.resolve(mode);
  return fetch(config.settingsUrl, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  })
    .then((r) => (r.ok ? r.json() : { mode: "off" }))
    .then((s) => {
      if (s && typeof s.insights_url === "string" && !config.insightsUrl) {
        config.insightsUrl = s.insights_url;
      }
      return s && ["on", "local", "off"].includes(s.mode) ? s.mode : "off";
    })
    .catch(() => "off") // unsure means off: nothing is ever sent on a guess
    .then((m) => {
      if (mode === "unknown") setMode(m);
      return mode;
    });
}

/** Resolves to "on", "local" or "off" once the state is known. */
export const ready = learnState();

function setMode(m) {
  mode = m;
  if (!collecting()) {
    pending = new Map();
    clearTimeout(timer);
    timer = 0;
  } else if (pending.size) {
    schedule();
  }
  announce();
}

/** Tell the module the state changed (the privacy page does after the toggle). */
export function setTelemetryMode(m) {
  try {
    if (["on", "local", "off"].includes(m)) setMode(m);
  } catch (_) {
    /* never throw */
  }
}

/** "on", "local", "off" or "unknown" (still asking the server). */
export function telemetryMode() {
  return mode;
}

/** How many actions are counted and not yet sent. */
export function pendingActions() {
  let n = 0;
  for (const c of pending.values()) n += c;
  return n;
}

/** Count one use of the UI action `name` (e.g. "bulk_edit"). Never throws. */
export function trackUIAction(name) {
  try {
    if (mode === "off") return;
    if (typeof name !== "string" || name.length > MAX_NAME_LENGTH || !NAME.test(name)) return;
    if (!pending.has(name) && pending.size >= MAX_PENDING_NAMES) return;
    pending.set(name, (pending.get(name) || 0) + 1);
    if (collecting()) schedule();
  } catch (_) {
    /* never throw */
  }
}

function schedule() {
  if (!timer) timer = setTimeout(() => flush(false), config.flushMs);
}

// Split {name: count} into request bodies the server accepts: at most 50 names and a
// count of at most 1000 per name each.
function batches(counts) {
  const out = [];
  let current = {};
  let names = 0;
  for (const [name, total] of counts) {
    let left = total;
    while (left > 0) {
      if (names === MAX_NAMES_PER_REQUEST || name in current) {
        out.push(current);
        current = {};
        names = 0;
      }
      const n = Math.min(left, MAX_COUNT_PER_REQUEST);
      current[name] = n;
      names += 1;
      left -= n;
    }
  }
  if (names) out.push(current);
  return out;
}

function send(actions, leaving) {
  const body = JSON.stringify({ actions });
  if (leaving && !config.csrfHeader && typeof navigator !== "undefined" && navigator.sendBeacon) {
    try {
      const blob = new Blob([body], { type: "application/json" });
      if (navigator.sendBeacon(config.endpoint, blob)) return;
    } catch (_) {
      /* fall back to fetch */
    }
  }
  try {
    fetch(config.endpoint, {
      method: "POST",
      headers: { ...writeHeaders(), "Content-Type": "application/json" },
      body,
      keepalive: true,
      credentials: "same-origin",
    })
      .then((r) => {
        // 204: the server has telemetry off; stop counting on this page.
        if (r.status === 204) setMode("off");
      })
      .catch(() => {
        /* best effort: a lost batch is not retried */
      });
  } catch (_) {
    /* never throw */
  }
}

/** Send what is counted now. `leaving`: the page is going away (use sendBeacon). */
export function flush(leaving = false) {
  try {
    clearTimeout(timer);
    timer = 0;
    if (!collecting() || !pending.size) return;
    const counts = pending;
    pending = new Map();
    for (const actions of batches(counts)) send(actions, leaving);
  } catch (_) {
    /* never throw */
  }
}

if (typeof document !== "undefined") {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", () => flush(true));
}

// <helios-telemetry-badge></helios-telemetry-badge>: "Contributing to Helios", linked to
// the public insights dashboard, shown only while usage is shared (mode "on").
// Attribute href= overrides the link.
if (typeof customElements !== "undefined" && !customElements.get("helios-telemetry-badge")) {
  customElements.define(
    "helios-telemetry-badge",
    class extends HTMLElement {
      connectedCallback() {
        this._update = () => this.render();
        window.addEventListener("helios-telemetry-change", this._update);
        this.render();
      }
      disconnectedCallback() {
        window.removeEventListener("helios-telemetry-change", this._update);
      }
      render() {
        try {
          const href = this.getAttribute("href") || config.insightsUrl;
          this.replaceChildren();
          this.hidden = mode !== "on";
          if (this.hidden) return;
          const a = document.createElement("a");
          a.className = "helios-telemetry-badge";
          a.textContent = "Contributing to Helios";
          a.title = "This Helios shares anonymous usage counts. See what everyone shares.";
          if (href) a.href = href;
          this.append(a);
        } catch (_) {
          /* never throw */
        }
      }
    },
  );
}
