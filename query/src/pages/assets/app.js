// Safeguard pages: two small enhancements. Everything works without them.
"use strict";

// Following a timeline marker (or any link to #entry-N) opens that entry and
// moves focus to it, so keyboard and screen-reader users land on its detail.
function openEntryFromHash() {
  if (!location.hash.startsWith("#entry-")) return;
  const item = document.getElementById(location.hash.slice(1));
  const details = item && item.querySelector("details");
  if (!details) return;
  details.open = true;
  const summary = details.querySelector("summary");
  if (summary) summary.focus();
}
window.addEventListener("hashchange", openEntryFromHash);
document.addEventListener("DOMContentLoaded", openEntryFromHash);

// Live indicators: the dashboard follows the indicators stream (Server-Sent
// Events, authenticated by the session cookie) and rewrites each card's
// figures as they change. Formatting matches the server's.
function formatValue(value, unit) {
  if (value === null || value === undefined) return "not computable";
  return unit === "share" ? (value * 100).toFixed(1) + "%" : value.toFixed(1);
}
function formatCount(value) {
  if (value === null || value === undefined) return "none";
  return Number.isInteger(value) ? value.toLocaleString("en-GB") : value.toFixed(2);
}
document.addEventListener("DOMContentLoaded", () => {
  const cards = document.querySelector("[data-stream]");
  const status = document.getElementById("live-status");
  if (!cards || !window.EventSource) return;
  const source = new EventSource(cards.dataset.stream);
  source.addEventListener("indicators", (event) => {
    const doc = JSON.parse(event.data);
    for (const indicator of doc.indicators || []) {
      const card = cards.querySelector(`[data-indicator="${indicator.name}"]`);
      if (!card) continue;
      card.querySelector(".figure").textContent = formatValue(indicator.value, indicator.unit);
      card.querySelector(".numerator").textContent = formatCount(indicator.numerator);
      card.querySelector(".denominator").textContent = formatCount(indicator.denominator);
    }
    const at = new Date().toLocaleTimeString("en-GB", { timeZone: "Europe/London" });
    if (status) status.textContent = `Live: figures updated at ${at}.`;
    cards.dataset.updates = String(Number(cards.dataset.updates || "0") + 1);
  });
  source.addEventListener("error", () => {
    if (status) status.textContent = "Live updates paused; reconnecting.";
  });
});
