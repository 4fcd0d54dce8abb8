(function () {
  "use strict";
  // The overview follows its figures live; the other pages need no script.
  var page = document.getElementById("overview");
  if (!page || !window.EventSource) return;
  var live = document.getElementById("live");
  var statuses = ["queued", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"];
  var skew = 0; // the server's clock minus this one's
  var svgNs = "http://www.w3.org/2000/svg";

  function secs(total) {
    total = Math.max(0, Math.floor(total));
    if (total < 60) return total + " s";
    var m = Math.floor(total / 60), s = total % 60;
    if (m < 60) return m + " min " + s + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function set(el, value) {
    value = String(value);
    if (el && el.textContent !== value) el.textContent = value;
  }
  function sameSet(a, b) {
    if (a.length !== b.length) return false;
    a = a.slice().sort(); b = b.slice().sort();
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function spark(svg, finished) {
    if (!svg) return;
    Array.prototype.slice.call(svg.querySelectorAll("rect")).forEach(function (r) { r.remove(); });
    var max = 0, total = 0;
    finished.forEach(function (m) {
      var all = m.succeeded + m.failed + m.cancelled;
      max = Math.max(max, all); total += all;
    });
    var scale = function (n) { return n > 0 ? Math.max(1, n / max * 22) : 0; };
    finished.forEach(function (m, i) {
      var all = m.succeeded + m.failed + m.cancelled, bad = m.failed + m.cancelled;
      [[all, "ok"], [bad, "bad"]].forEach(function (part) {
        if (part[0] <= 0) return;
        var h = scale(part[0]), rect = document.createElementNS(svgNs, "rect");
        rect.setAttribute("class", part[1]);
        rect.setAttribute("x", String(i * 2));
        rect.setAttribute("y", (23 - h).toFixed(1));
        rect.setAttribute("width", "1.6");
        rect.setAttribute("height", h.toFixed(1));
        svg.appendChild(rect);
      });
    });
    var title = svg.querySelector("title");
    var text = total + " finished in the last hour";
    svg.setAttribute("aria-label", text);
    set(title, text + " (busiest minute: " + max + ")");
  }
  // Ages that grow by themselves: the oldest waits and the workers' last reports.
  function tick() {
    var now = Date.now() + skew;
    Array.prototype.forEach.call(document.querySelectorAll("#jobs td.wait"), function (td) {
      set(td, td.dataset.due ? secs((now - Number(td.dataset.due)) / 1000) : "—");
    });
    Array.prototype.forEach.call(document.querySelectorAll("#workers td.seen"), function (td) {
      var ago = td.querySelector(".ago");
      if (ago) set(ago, "(" + secs((now - Number(td.dataset.at)) / 1000) + " ago)");
    });
  }
  function reload() {
    source.close();
    window.location.reload();
  }
  function update(data) {
    skew = Date.parse(data.at) - Date.now();
    var rows = Array.prototype.slice.call(document.querySelectorAll("#jobs tbody tr"));
    var names = data.jobs.map(function (j) { return j.job; });
    var shown = rows.map(function (r) { return r.dataset.job; });
    // New jobs, or a "Retry failed" button to add or remove: the server draws the page afresh.
    if (names.join("\u0000") !== shown.join("\u0000")) return reload();
    for (var i = 0; i < rows.length; i++) {
      if ((data.jobs[i].counts.failed > 0) !== !!rows[i].querySelector("form")) return reload();
    }
    var workerRows = Array.prototype.slice.call(document.querySelectorAll("#workers tbody tr"));
    var ids = data.workers.map(function (w) { return w.id; });
    if (!sameSet(ids, workerRows.map(function (r) { return r.dataset.worker; }))) return reload();

    data.jobs.forEach(function (job, i) {
      var row = rows[i];
      statuses.forEach(function (s) {
        set(row.querySelector('td[data-status="' + s + '"] a'), job.counts[s]);
      });
      var wait = row.querySelector("td.wait");
      if (wait) wait.dataset.due = job.oldest_due ? String(Date.parse(job.oldest_due)) : "";
      spark(row.querySelector("svg.spark"), job.finished);
    });
    statuses.forEach(function (s) {
      set(document.querySelector('[data-total="' + s + '"]'), data.totals[s]);
    });
    set(document.getElementById("oldest-wait"),
      data.oldest_wait_seconds === null ? "—" : secs(data.oldest_wait_seconds));
    set(document.getElementById("worker-count"), data.workers.length);
    data.workers.forEach(function (w) {
      var row = workerRows.filter(function (r) { return r.dataset.worker === w.id; })[0];
      if (!row) return;
      var meter = row.querySelector("meter");
      if (meter) { meter.max = w.concurrency; meter.value = w.busy; }
      set(row.querySelector(".busy"), w.busy + " of " + w.concurrency);
      var seen = row.querySelector("td.seen");
      if (seen) seen.dataset.at = String(Date.parse(w.last_seen));
    });
    tick();
  }

  var source = new EventSource(page.dataset.events);
  source.addEventListener("stats", function (e) {
    try { update(JSON.parse(e.data)); } catch (err) { /* a malformed event: wait for the next */ }
  });
  source.onopen = function () {
    if (live) { live.textContent = "Live"; live.className = "on"; }
  };
  source.onerror = function (e) {
    if (e.data) {
      // The server's own `event: error`: the store cannot be read; the stream goes on.
      if (live) { live.textContent = "The task store cannot be reached; retrying"; live.className = ""; }
    } else if (source.readyState === 2) {
      // The browser gave up on the stream (refused when too many are open, say): reload now
      // and then instead, as without JavaScript.
      setTimeout(function () { window.location.reload(); }, Number(page.dataset.refresh || 5) * 1000);
    }
  };
  setInterval(tick, 1000);
})();
