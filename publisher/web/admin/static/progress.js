// The digest page's live progress: polls its JSON every 2 s while the page is open and fills
// the elements marked data-field. No framework, nothing inline (the console's CSP forbids it).
(function () {
  "use strict";
  var section = document.getElementById("digest-progress");
  if (!section) { return; }
  var url = section.getAttribute("data-progress-url");
  var states = JSON.parse(section.getAttribute("data-states") || "{}");
  var running = section.querySelector('[data-field="running"]');
  var runningText = running ? running.getAttribute("data-text") : "";
  function field(name) { return section.querySelector('[data-field="' + name + '"]'); }
  function put(name, value) { var el = field(name); if (el) { el.textContent = value; } }
  function show(p) {
    var c = p.counts || {};
    put("status", p.status);
    put("done", p.done);
    put("total", p.total);
    put("sent", c.sent || 0);
    put("uncertain", c.uncertain || 0);
    put("failed", c.failed || 0);
    put("waiting", (c.pending || 0) + (c.sending || 0));
    put("rate", p.rate === null ? "–" : p.rate);
    put("eta", p.eta_seconds === null ? "–" : p.eta_seconds + " s");
    put("error", p.error || "");
    if (running) { running.textContent = p.running ? runningText : ""; }
    var bar = field("bar");
    if (bar) { bar.max = p.total || 1; bar.value = p.done; }
    var list = document.querySelector("#digest-failures tbody");
    if (list && p.failures && p.failures.length) {
      list.textContent = "";
      p.failures.forEach(function (f) {
        var row = document.createElement("tr");
        [f.email, states[f.state] || f.state, f.tries, "", "", "", f.reason].forEach(function (text) {
          var cell = document.createElement("td");
          cell.textContent = text;
          row.appendChild(cell);
        });
        list.appendChild(row);
      });
    }
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) { if (p) { show(p); } })
      .catch(function () { /* the next poll tries again */ })
      .finally(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
})();
