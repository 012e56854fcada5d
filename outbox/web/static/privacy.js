// The privacy settings page: send the toggle to PUT /api/settings/telemetry.
//
// The page is complete as the server renders it (state, lists, lock reason, who may
// switch); this only handles a change of the switch, and shows what the server answered.
import { setTelemetryMode, writeHeaders } from "./telemetry.js";

const data = document.documentElement.dataset;
const settingsUrl = data.heliosTelemetrySettings || "/api/settings/telemetry";
const toggle = document.getElementById("helios-share");
const status = document.getElementById("helios-share-status");
const lock = document.getElementById("helios-share-lock");
const error = document.getElementById("helios-share-error");
const worker = document.getElementById("helios-worker");

function showError(text) {
  error.textContent = text;
  error.hidden = !text;
}

function showLock(text) {
  lock.textContent = text || "";
  lock.hidden = !text;
  toggle.disabled = Boolean(text) || data.heliosMayChange === "false";
  toggle.setAttribute(
    "aria-describedby",
    text ? "helios-share-status helios-share-lock" : "helios-share-status",
  );
}

function showWorker(text) {
  if (!worker) return;
  worker.textContent = text || "";
  worker.hidden = !text;
}

async function save(wanted) {
  showError("");
  toggle.setAttribute("aria-busy", "true");
  let answer = null;
  let response = null;
  try {
    response = await fetch(settingsUrl, {
      method: "PUT",
      credentials: "same-origin",
      headers: {
        ...writeHeaders(),
        "Content-Type": "application/json",
        Accept: "application/json",
      },
      body: JSON.stringify({ enabled: wanted }),
    });
    answer = await response.json().catch(() => null);
  } catch (_) {
    response = null;
  } finally {
    toggle.removeAttribute("aria-busy");
  }
  if (response && response.ok && answer) {
    toggle.checked = Boolean(answer.enabled);
    status.textContent = wanted ? answer.headline : `${answer.headline} ${answer.message}`;
    showLock(answer.lock_message);
    showWorker(answer.worker_warning);
    setTelemetryMode(answer.mode);
    document.documentElement.dataset.heliosTelemetry = answer.mode;
    return;
  }
  toggle.checked = !wanted; // nothing changed on the server
  if (response && response.status === 409) {
    showLock(answer && answer.detail);
    showError("The server's environment decides this setting.");
  } else if (response && response.status === 403) {
    // the real reason: not an administrator, no authorisation hook, a cross-site request
    const why = answer && answer.detail ? answer.detail : "not allowed";
    showError(`The setting was not changed: ${why}.`);
  } else {
    const detail = answer && answer.detail ? ` (${answer.detail})` : "";
    showError(`The setting could not be saved${detail}. Please try again.`);
  }
}

if (toggle) {
  toggle.addEventListener("change", () => save(toggle.checked));
}
