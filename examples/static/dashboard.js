// The example dashboard: every button reports its UI action with trackUIAction().
import { trackUIAction, writeHeaders } from "/telemetry/static/telemetry.js";

const message = document.getElementById("message");
const tbody = document.getElementById("users");
let ascending = true;

function say(text) {
  message.textContent = text;
}

document.getElementById("bulk-edit").addEventListener("click", () => {
  trackUIAction("bulk_edit");
  say("Bulk edit: select the users to change.");
});

document.getElementById("export-csv").addEventListener("click", () => {
  trackUIAction("export_csv");
  say(`Exported ${tbody.rows.length} users as CSV.`);
});

for (const button of document.querySelectorAll("button.sort")) {
  button.addEventListener("click", () => {
    trackUIAction("column_sort");
    const column = button.id === "sort-name" ? 0 : 1;
    const rows = [...tbody.rows].sort((a, b) =>
      a.cells[column].textContent.localeCompare(b.cells[column].textContent),
    );
    if (!ascending) rows.reverse();
    ascending = !ascending;
    tbody.append(...rows);
  });
}

document.getElementById("sync").addEventListener("click", async () => {
  const r = await fetch("/api/commands/sync", {
    method: "POST",
    credentials: "same-origin",
    headers: writeHeaders(), // Django's CSRF token; nothing elsewhere
  });
  const answer = await r.json();
  say(`Synced ${answer.synced} users.`);
});

// The table comes from the (fake) relay, which the backend counts as users.list.
fetch("/api/relay/users", { credentials: "same-origin" })
  .then((r) => r.json())
  .then(({ users }) => {
    tbody.replaceChildren(
      ...users.map((u) => {
        const tr = document.createElement("tr");
        for (const value of [u.name, u.group]) {
          const td = document.createElement("td");
          td.textContent = value;
          tr.append(td);
        }
        return tr;
      }),
    );
    document.body.dataset.loaded = "true";
  })
  .catch(() => say("Could not load the users."));
