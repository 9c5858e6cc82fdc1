/* A job's page: its log tail, live (the `lines` events of the one log follower the dashboard holds
   for this job, shared by every browser watching it), and its state. Only the last lines stay in
   the page: a log of any size followed for hours keeps the tab small. The full log is the
   download link. */
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

  Titan.on("run", function (msg) {
    (msg.jobs || []).forEach(function (j) {
      if (j.id !== job.id) return;
      job = j;
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
})();
