(function () {
  "use strict";
  var page = document.getElementById("group");
  if (!page || page.dataset.final === "true" || !window.EventSource) return;
  var bar = document.getElementById("bar");
  var summary = document.getElementById("summary");
  var percent = document.getElementById("percent");
  var eta = document.getElementById("eta");
  var elapsed = document.getElementById("elapsed");
  var state = page.dataset.state;
  var listed = Number(page.dataset.members);
  var created = Number(page.dataset.created);
  var etaAt = null;
  var labels = { queued: "Waiting for a worker", scheduled: "Scheduled", running: "Running",
    retrying: "Retrying", succeeded: "Done", failed: "Failed", cancelled: "Cancelled" };

  function secs(total) {
    total = Math.max(0, Math.round(total));
    if (total < 60) return total + " s";
    var m = Math.floor(total / 60), s = total % 60;
    if (m < 60) return m + " min " + s + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function tick() {
    if (elapsed && created) elapsed.textContent = secs((Date.now() - created) / 1000) + " elapsed";
    if (eta) eta.textContent = etaAt === null ? "" : "about " + secs(Math.max(1, (etaAt - Date.now()) / 1000)) + " left";
  }
  function text(li, selector, value) {
    var el = li.querySelector(selector);
    if (el && el.textContent !== value) el.textContent = value;
  }
  function row(m) {
    var li = document.getElementById("m-" + m.id);
    if (!li) return;
    var badge = li.querySelector(".state");
    if (badge) {
      badge.className = "state " + m.status;
      badge.textContent = m.status === "running" && m.cancel_requested ? "Cancelling" : (labels[m.status] || m.status);
    }
    var p = m.progress;
    text(li, ".pct", p ? (p.percent === null ? "step " + p.step : Math.floor(p.percent) + "%") : "");
    text(li, ".msg", p && p.message ? p.message : "");
    text(li, ".err", m.last_error && m.status !== "succeeded" ? m.last_error.message : "");
  }
  function update(group) {
    // A new stage (started, finishing up, done), or tasks added: the server draws it afresh.
    if (group.state !== state || group.is_final || group.members.length !== listed) {
      source.close();
      window.location.reload();
      return;
    }
    bar.value = group.percent;
    bar.textContent = Math.floor(group.percent) + "%";
    percent.textContent = Math.floor(group.percent) + "%";
    if (summary.textContent !== group.summary) summary.textContent = group.summary;
    group.members.forEach(row);
    etaAt = group.eta_seconds === null ? null : Date.now() + group.eta_seconds * 1000;
    tick();
  }
  var source = new EventSource(page.dataset.events);
  function onEvent(e) {
    try { update(JSON.parse(e.data)); } catch (err) { /* a malformed event: wait for the next */ }
  }
  source.addEventListener("progress", onEvent);
  source.addEventListener("status", onEvent);
  // The browser gave up on the stream (refused when too many are open, say): reload now and
  // then instead, as without JavaScript.
  source.onerror = function () {
    if (source.readyState === 2) setTimeout(function () { window.location.reload(); }, 5000);
  };
  var initialEta = Number(page.dataset.eta);
  if (page.dataset.eta !== "" && !isNaN(initialEta)) etaAt = Date.now() + initialEta * 1000;
  setInterval(tick, 1000);
})();
