/* A job's page: its log tail, live (the `lines` events of the one log follower the dashboard holds
   for this job, shared by every browser watching it), and its state and attempts (the job as the
   `run` events of its run's watch carry it: every attempt's state, exit, log size and times; a
   retry's row is added on top). Only the last lines stay in the page: a log of any size followed
   for hours keeps the tab small. The full log is the download link. */
(function () {
  "use strict";
  var Titan = window.Titan;
  var holder = document.getElementById("job-data");
  if (!holder) return;
  var data = JSON.parse(holder.textContent);
  var job = data.job;
  var MAX_LINES = 2 * data.keep;
  var log = document.getElementById("log");
  var note = document.getElementById("log-note");
  var follow = document.getElementById("log-follow");

  function add(lines) {
    var frag = document.createDocumentFragment();
    lines.forEach(function (l) {
      var div = document.createElement("div");
      div.className = "log-line" + (l[2] === "e" ? " stderr" : "") + (l[4] ? " titan" : "");
      div.setAttribute("data-testid", "log-line");
      div.setAttribute("data-attempt", String(l[0]));
      div.textContent = l[3];
      frag.appendChild(div);
    });
    log.appendChild(frag);
    var extra = log.childElementCount - MAX_LINES;
    while (extra-- > 0) log.removeChild(log.firstElementChild);
    if (follow && follow.checked) log.scrollTop = log.scrollHeight;
  }

  Titan.on("lines", function (msg) {
    if (msg.reset) {
      log.textContent = "";
      note.textContent = msg.cut ? "Earlier output is not shown here: download the full log." : "";
    }
    add(msg.lines);
  });

  Titan.on("eof", function (msg) {
    note.textContent = msg.error ? "The log could not be read: " + msg.error : note.textContent;
    log.setAttribute("data-ended", "true");
  });

  var attempts = document.querySelector("#job-attempts tbody");
  var logUrl = attempts ? document.getElementById("job-attempts").getAttribute("data-log-url") : "";
  var CELLS = ["state", "worker", "exit", "signal", "reason", "started", "took", "log"];

  function text(value) { return value === null || value === undefined ? "" : String(value); }

  function cell(row, name, value) {
    var td = row.querySelector('[data-cell="' + name + '"]');
    if (td && td.textContent !== value) td.textContent = value;
    return td;
  }

  function localTime(ts) {  // as the server's `when`: 2024-05-01 12:34:56
    var d = new Date(ts * 1000);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function attemptRow(a) {
    var row = attempts.querySelector('tr[data-attempt="' + a.n + '"]');
    if (row) return row;
    row = document.createElement("tr");
    row.setAttribute("data-testid", "attempt-row");
    row.setAttribute("data-attempt", String(a.n));
    var number = document.createElement("td");
    number.textContent = String(a.n);
    row.appendChild(number);
    CELLS.forEach(function (name) {
      var td = document.createElement("td");
      td.setAttribute("data-cell", name);
      if (name === "reason") td.className = "sub";
      if (name === "state") {
        var badge = document.createElement("span");
        badge.className = "state";
        td.appendChild(badge);
      } else if (name === "log") {
        var link = document.createElement("a");
        link.href = logUrl + "?attempt=" + a.n;
        link.setAttribute("download", "");
        link.setAttribute("data-testid", "attempt-log-download");
        td.appendChild(link);
      }
      row.appendChild(td);
    });
    // Newest first: before the first row of an earlier attempt.
    var later = null;
    attempts.querySelectorAll("tr[data-attempt]").forEach(function (other) {
      if (!later && Number(other.getAttribute("data-attempt")) < a.n) later = other;
    });
    attempts.insertBefore(row, later);
    var empty = attempts.querySelector("tr[data-empty]");
    if (empty) empty.remove();
    return row;
  }

  function renderAttempts() {
    if (!attempts) return;
    var now = Date.now() / 1000;
    (job.attempts || []).forEach(function (a) {
      var row = attemptRow(a);
      row.setAttribute("data-state", a.state);
      var badge = row.querySelector('[data-cell="state"] .state');
      if (badge && badge.textContent !== a.state) Titan.setState(badge, a.state);
      cell(row, "worker", text(a.worker));
      cell(row, "exit", text(a.exit));
      cell(row, "signal", text(a.signal));
      cell(row, "reason", text(a.reason));
      var started = cell(row, "started", Titan.ago(a.started));
      if (started && a.started && !started.title) started.title = localTime(a.started);
      cell(row, "took", a.started ? Titan.duration((a.ended || now) - a.started) : "");
      var link = row.querySelector('[data-cell="log"] a');
      if (link && link.textContent !== Titan.size(a.log)) link.textContent = Titan.size(a.log);
    });
  }

  function renderTimes() {
    var created = document.getElementById("job-created");
    if (created && job.created) created.textContent = Titan.ago(job.created);
    var ran = document.getElementById("job-ran");
    if (!ran || !job.started) return;
    var last = (job.attempts || [])[(job.attempts || []).length - 1];
    // A gate waiting for a decision has not ended; what ran of it ended with its last attempt.
    var until = job.ended || (job.state === "WAITING_APPROVAL" && last && last.ended) || Date.now() / 1000;
    var value = Titan.duration(until - job.started);
    if (ran.textContent !== value) ran.textContent = value;
    ran.hidden = false;
    var label = document.getElementById("job-ran-label");
    if (label) label.hidden = false;
  }

  function running() { return !Titan.terminal(job.state) && job.state !== "WAITING_APPROVAL"; }

  Titan.on("run", function (msg) {
    (msg.jobs || []).forEach(function (j) {
      if (j.id !== job.id) return;
      job = j;
      renderAttempts();
      renderTimes();
      var badge = document.getElementById("job-state");
      if (badge) Titan.setState(badge, j.state);
      var reason = document.getElementById("job-reason");
      if (reason) reason.textContent = j.reason || "";
      var worker = document.getElementById("job-worker");
      if (worker) worker.textContent = j.worker || "";
      var exit = document.getElementById("job-exit");
      if (exit) exit.textContent = j.exit === null || j.exit === undefined ? "" : String(j.exit);
      if (Titan.terminal(j.state)) {
        var cancel = document.getElementById("job-cancel-form");
        if (cancel) cancel.remove();
      }
    });
  });

  // What runs now: its times go on (a few cells' text, once a second).
  window.setInterval(function () {
    if (!running()) return;
    renderAttempts();
    renderTimes();
  }, 1000);
})();
