/* A run's page: the DAG (cytoscape + dagre) whose nodes change colour live, the jobs table, the
   counts, and a timeline of attempts, all from the page's data and the live `run` events (one
   watch of the run in the dashboard, shared by every browser on this page).
   For browser tests: `window.titanGraph` is the cytoscape instance (node data: id, state),
   `window.titanLayout()` the options of its layout (dagre, or `layered` positions for a big run), and
   each job's table row (data-testid="run-node", data-job, data-state) changes with it. */
(function () {
  "use strict";
  var Titan = window.Titan;
  var COLORS = {
    PENDING: "#cbd5e1", READY: "#fde68a", ASSIGNED: "#93c5fd", RUNNING: "#3b82f6",
    WAITING_APPROVAL: "#c084fc", STARTING: "#93c5fd", HEALTHY: "#22c55e", RESTARTING: "#f97316",
    SUCCEEDED: "#16a34a", FAILED: "#dc2626", UPSTREAM_FAILED: "#f87171", CANCELLED: "#6b7280",
    SKIPPED: "#e5e7eb", STOPPED: "#9ca3af"
  };
  var MAX_GANTT = 300;
  var LAYOUT = { name: "dagre", rankDir: "LR", nodeSep: 14, rankSep: 50, fit: true, padding: 20 };
  /* Above this many jobs dagre (which minimises crossings, in seconds for a thousand nodes) gives
     way to `layered`: columns by depth, rows by the parents' mean row, in milliseconds. */
  var MAX_DAGRE = 300;
  var holder = document.getElementById("run-data");
  if (!holder) return;
  var data = JSON.parse(holder.textContent);
  var run = data.run;
  var jobs = {};
  data.jobs.forEach(function (j) { jobs[j.id] = j; });
  var cy = null;
  var relayout = null;

  function color(state) { return COLORS[state] || "#cbd5e1"; }

  /* Positions for a big DAG: a job's column is its depth (the longest path from a root), its row
     follows the mean row of its parents (one pass, column by column), so edges mostly run ahead. */
  function layered() {
    var ids = Object.keys(jobs).sort();
    var depth = {};
    var children = {};
    var waiting = {};
    ids.forEach(function (id) {
      var parents = (jobs[id].parents || []).filter(function (p) { return p in jobs; });
      waiting[id] = parents.length;
      parents.forEach(function (p) { (children[p] = children[p] || []).push(id); });
    });
    var queue = ids.filter(function (id) { return waiting[id] === 0; });
    queue.forEach(function (id) { depth[id] = 0; });
    for (var i = 0; i < queue.length; i++) {
      (children[queue[i]] || []).forEach(function (c) {
        depth[c] = Math.max(depth[c] || 0, depth[queue[i]] + 1);
        if (--waiting[c] === 0) queue.push(c);
      });
    }
    var columns = [];
    ids.forEach(function (id) {
      var d = depth[id] || 0;  // a job in a cycle (never: the master refuses them) goes first
      (columns[d] = columns[d] || []).push(id);
    });
    var row = {};
    var positions = {};
    columns.forEach(function (column, x) {
      if (!column) return;
      var key = {};
      column.forEach(function (id) {
        var parents = (jobs[id].parents || []).filter(function (p) { return p in row; });
        key[id] = parents.length ? parents.reduce(function (s, p) { return s + row[p]; }, 0) / parents.length : 0;
      });
      column.sort(function (a, b) { return key[a] - key[b] || (a < b ? -1 : a > b ? 1 : 0); });
      column.forEach(function (id, y) {
        row[id] = y;
        positions[id] = { x: x * 160, y: y * 34 };
      });
    });
    return positions;
  }

  function layoutOptions() {
    if (Object.keys(jobs).length <= MAX_DAGRE) return LAYOUT;
    var positions = layered();
    return { name: "preset", positions: function (node) { return positions[node.id()]; }, fit: true, padding: 20 };
  }

  function jobUrl(id) {
    return Titan.root + "/jobs/" + encodeURIComponent(run.id) + "/" + encodeURIComponent(id);
  }

  function buildGraph() {
    var box = document.getElementById("run-graph");
    if (!box || !data.graph || typeof cytoscape === "undefined") return;
    var elements = [];
    Object.keys(jobs).forEach(function (id) { elements.push(nodeOf(jobs[id])); });
    Object.keys(jobs).forEach(function (id) { elements = elements.concat(edgesOf(jobs[id])); });
    cy = cytoscape({
      container: box,
      elements: elements,
      minZoom: 0.1,
      maxZoom: 3,
      style: [
        { selector: "node", style: {
          "shape": "round-rectangle", "background-color": "data(color)", "label": "data(id)",
          "font-size": 11, "text-valign": "center", "text-halign": "center",
          "width": function (node) { return Math.max(36, node.id().length * 7 + 14); },
          "height": 24, "border-width": 1, "border-color": "#475569" } },
        { selector: "edge", style: {
          "width": 1.2, "line-color": "#94a3b8", "target-arrow-color": "#94a3b8",
          "target-arrow-shape": "triangle", "curve-style": "bezier" } }
      ],
      layout: layoutOptions()
    });
    var notTooBig = function () {  // a small graph is not blown up to fill the box
      if (cy.zoom() > 1.2) { cy.zoom(1.2); cy.center(); }
    };
    notTooBig();  // the first layout ran in the constructor
    cy.on("layoutstop", notTooBig);
    cy.on("tap", "node", function (evt) { window.location.href = jobUrl(evt.target.id()); });
    window.titanGraph = cy;
    window.titanLayout = layoutOptions;
  }

  function nodeOf(job) {
    return { group: "nodes", data: { id: job.id, state: job.state, color: color(job.state) } };
  }

  function edgesOf(job) {
    return (job.parents || []).filter(function (p) { return p in jobs; }).map(function (p) {
      return { group: "edges", data: { id: p + "\u2192" + job.id, source: p, target: job.id } };
    });
  }

  function updateGraph(job, isNew) {
    if (!cy) return;
    var node = cy.getElementById(job.id);
    if (node.empty()) {
      cy.add(nodeOf(job));
      cy.add(edgesOf(job).filter(function (e) { return cy.getElementById(e.data.id).empty(); }));
      if (relayout) window.clearTimeout(relayout);
      relayout = window.setTimeout(function () { cy.layout(layoutOptions()).run(); }, 300);
    } else if (node.data("state") !== job.state) {
      node.data({ state: job.state, color: color(job.state) });
    }
  }

  function cell(row, name, text) {
    var td = row.querySelector('[data-cell="' + name + '"]');
    if (td) td.textContent = text;
    return td;
  }

  function updateRow(job) {
    var row = document.getElementById("node-" + job.id);
    var body = document.querySelector("#run-jobs tbody");
    if (!row) {
      if (!body || !data.graph) return;
      row = document.createElement("tr");
      row.id = "node-" + job.id;
      row.setAttribute("data-testid", "run-node");
      row.setAttribute("data-job", job.id);
      var link = document.createElement("a");
      link.href = jobUrl(job.id);
      link.textContent = job.id;
      var first = document.createElement("td");
      first.appendChild(link);
      row.appendChild(first);
      ["state", "attempt", "worker", "exit", "started", "took", "reason"].forEach(function (name) {
        var td = document.createElement("td");
        td.setAttribute("data-cell", name);
        if (name === "state") { var badge = document.createElement("span"); badge.className = "state"; td.appendChild(badge); }
        row.appendChild(td);
      });
      body.appendChild(row);
    }
    row.setAttribute("data-state", job.state);
    var badge = row.querySelector('[data-cell="state"] .state');
    if (badge) Titan.setState(badge, job.state);
    cell(row, "attempt", job.attempt ? String(job.attempt) : "");
    cell(row, "worker", job.worker || "");
    cell(row, "exit", job.exit === null || job.exit === undefined ? "" : String(job.exit));
    cell(row, "reason", job.reason || "");
    if (job.started) {
      cell(row, "took", Titan.duration((job.ended || Date.now() / 1000) - job.started));
      cell(row, "started", new Date(job.started * 1000).toLocaleTimeString());
    }
  }

  function renderGantt() {
    var box = document.getElementById("run-gantt");
    if (!box) return;
    var now = Date.now() / 1000;
    var list = Object.keys(jobs).map(function (id) { return jobs[id]; })
      .filter(function (j) { return j.attempts && j.attempts.length; });
    list.sort(function (a, b) { return start(a.attempts[0]) - start(b.attempts[0]); });
    var t0 = run.created || now;
    var t1 = t0 + 1;
    list.forEach(function (j) { j.attempts.forEach(function (a) { t1 = Math.max(t1, a.ended || now); }); });
    box.textContent = "";
    var axis = document.createElement("div");
    axis.className = "gantt-axis";
    axis.textContent = "0 → " + Titan.duration(t1 - t0) + (list.length > MAX_GANTT ? " (the first " + MAX_GANTT + " jobs of " + list.length + ")" : "");
    box.appendChild(axis);
    list.slice(0, MAX_GANTT).forEach(function (j) {
      var row = document.createElement("div");
      row.className = "gantt-row";
      row.setAttribute("data-testid", "gantt-row");
      row.setAttribute("data-job", j.id);
      var label = document.createElement("a");
      label.className = "gantt-label";
      label.href = jobUrl(j.id);
      label.textContent = j.id;
      var track = document.createElement("div");
      track.className = "gantt-track";
      j.attempts.forEach(function (a) {
        var from = start(a) || t0;
        var to = a.ended || now;
        var bar = document.createElement("div");
        bar.className = "gantt-bar state-" + a.state;
        bar.style.left = ((from - t0) / (t1 - t0) * 100) + "%";
        bar.style.width = Math.max(0.4, (to - from) / (t1 - t0) * 100) + "%";
        bar.title = j.id + " attempt " + a.n + ": " + a.state + ", " + Titan.duration(to - from) +
          (a.worker ? " on " + a.worker : "") + (a.reason ? " (" + a.reason + ")" : "");
        track.appendChild(bar);
      });
      row.appendChild(label);
      row.appendChild(track);
      box.appendChild(row);
    });
  }

  function start(a) { return a.started || a.assigned || 0; }

  var ganttDue = false;
  function ganttSoon() {
    if (ganttDue) return;
    ganttDue = true;
    window.setTimeout(function () { ganttDue = false; renderGantt(); }, 500);
  }

  Titan.on("run", function (msg) {
    if (msg.run) {
      run = msg.run;
      var badge = document.getElementById("run-state");
      if (badge) Titan.setState(badge, run.state);
      var counts = document.getElementById("run-counts");
      if (counts) Titan.counts(counts, run.counts, true);
      if (run.state !== "RUNNING") {
        var cancel = document.getElementById("run-cancel-form");
        if (cancel) cancel.remove();
      }
    }
    (msg.jobs || []).forEach(function (job) {
      var isNew = !(job.id in jobs);
      jobs[job.id] = job;
      updateGraph(job, isNew);
      updateRow(job);
    });
    ganttSoon();
  });

  buildGraph();
  renderGantt();
  window.setInterval(function () { if (run.state === "RUNNING") renderGantt(); }, 2000);
})();
