(function () {
  "use strict";
  var page = document.getElementById("task");
  if (!page || page.dataset.final === "true" || !window.EventSource) return;
  var bar = document.getElementById("bar");
  var message = document.getElementById("message");
  var percent = document.getElementById("percent");
  var eta = document.getElementById("eta");
  var elapsed = document.getElementById("elapsed");
  var retry = document.getElementById("retry");
  var status = page.dataset.status;
  var created = Number(page.dataset.created);
  var etaAt = null;

  function secs(total) {
    total = Math.max(0, Math.round(total));
    if (total < 60) return total + " s";
    var m = Math.floor(total / 60), s = total % 60;
    if (m < 60) return m + " min " + s + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function tick() {
    if (elapsed && created) elapsed.textContent = secs((Date.now() - created) / 1000) + " elapsed";
    if (retry) retry.textContent = retry.dataset.prefix + secs(Math.max(0, (Number(retry.dataset.at) - Date.now()) / 1000)) + ".";
    if (eta) eta.textContent = etaAt === null ? "" : "about " + secs(Math.max(1, (etaAt - Date.now()) / 1000)) + " left";
  }
  function update(task) {
    if (task.status !== status || task.cancel_requested !== (page.dataset.cancelling === "true")) {
      source.close();
      window.location.reload();
      return;
    }
    var p = task.progress;
    if (p) {
      if (p.percent === null) {
        bar.removeAttribute("value");
        percent.textContent = "step " + p.step;
      } else {
        bar.value = p.percent;
        bar.textContent = p.percent + "%";
        percent.textContent = Math.floor(p.percent) + "%";
      }
      message.textContent = p.message || "";
    }
    etaAt = task.eta_seconds === null ? null : Date.now() + task.eta_seconds * 1000;
    tick();
  }
  var source = new EventSource(page.dataset.events);
  function onEvent(e) {
    try { update(JSON.parse(e.data)); } catch (err) { /* a malformed event: wait for the next */ }
  }
  source.addEventListener("progress", onEvent);
  source.addEventListener("status", onEvent);
  // The browser gave up on the stream (the server refused it, say, when too many are open):
  // refresh the page now and then instead, as without JavaScript.
  source.onerror = function () {
    if (source.readyState === 2) setTimeout(function () { window.location.reload(); }, 5000);
  };
  var initialEta = Number(page.dataset.eta);
  if (page.dataset.eta !== "" && !isNaN(initialEta)) etaAt = Date.now() + initialEta * 1000;
  setInterval(tick, 1000);
})();
