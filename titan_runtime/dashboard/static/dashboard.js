/* The Titan dashboard's shared script: live JSON events to page handlers, run-state badges,
   typed text kept across live swaps. No inline script anywhere: the CSP allows scripts from this
   site only. */
(function () {
  "use strict";

  var handlers = {};
  var JSON_EVENTS = ["runs", "load", "loadhistory", "run", "lines", "eof", "trouble"];
  var TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED", "SKIPPED", "STOPPED"];

  var Titan = {
    root: document.body ? document.body.getAttribute("data-root") || "" : "",
    terminal: function (state) { return TERMINAL.indexOf(state) >= 0; },
    on: function (event, fn) { (handlers[event] = handlers[event] || []).push(fn); },
    emit: function (event, value) {
      (handlers[event] || []).forEach(function (fn) {
        try { fn(value); } catch (err) { if (window.console) console.error(err); }
      });
    },
    setState: function (el, state) {
      el.textContent = state;
      el.className = (el.className.replace(/\bstate-\S+/g, "").trim() + " state-" + state).trim();
    },
    counts: function (el, counts, long) {
      el.textContent = "";
      Object.keys(counts).sort().forEach(function (state) {
        var span = document.createElement("span");
        span.className = "count state-" + state;
        span.title = state;
        span.textContent = long ? state + " " + counts[state] : String(counts[state]);
        el.appendChild(span);
      });
    },
    duration: function (seconds) {
      seconds = Math.max(0, seconds);
      if (seconds < 10) return seconds.toFixed(1) + "s";
      if (seconds < 120) return Math.round(seconds) + "s";
      if (seconds < 7200) return Math.round(seconds / 60) + "m";
      if (seconds < 172800) return (seconds / 3600).toFixed(1) + "h";
      return (seconds / 86400).toFixed(1) + "d";
    },
    size: function (bytes) {  // as the server's `size` filter: B, KiB, MiB, GiB
      var value = Number(bytes) || 0;
      var units = ["B", "KiB", "MiB", "GiB"];
      for (var i = 0; i < units.length; i++) {
        if (value < 1024 || i === units.length - 1) return i === 0 ? value.toFixed(0) + " B" : value.toFixed(1) + " " + units[i];
        value /= 1024;
      }
      return "";
    },
    ago: function (ts) { return ts ? Titan.duration(Date.now() / 1000 - ts) + " ago" : ""; },
    byAttr: function (attr, value) {
      var found = [];
      document.querySelectorAll("[" + attr + "]").forEach(function (el) {
        if (el.getAttribute(attr) === value) found.push(el);
      });
      return found;
    },
    flash: function (level, message) {
      var area = document.getElementById("flash");
      if (!area) return;
      var div = document.createElement("div");
      div.className = "flash " + level;
      div.setAttribute("role", "status");
      div.setAttribute("data-testid", "flash-" + level);
      div.textContent = message;
      area.appendChild(div);
    }
  };
  window.Titan = Titan;

  // The htmx SSE extension owns the page's one EventSource (made by htmx.createEventSource, which
  // it calls at each (re)connect); they are kept here to be closed when the person signs out.
  var sources = [];
  var signingOut = false;
  if (window.htmx && typeof htmx.createEventSource === "function") {
    var makeSource = htmx.createEventSource;
    htmx.createEventSource = function (url) {
      var source = makeSource(url);
      if (signingOut) source.close();  // a reconnect due after the sign-out: none
      sources = sources.filter(function (s) { return s.readyState !== EventSource.CLOSED; });
      sources.push(source);
      return source;
    };
  }

  // Signing out ends the session's streams on the server; the page closes them first, so that it
  // never sees them end (the SSE extension would report that as an error, and try again).
  document.addEventListener("submit", function (evt) {
    if (!evt.target || evt.target.id !== "sign-out-form") return;
    signingOut = true;
    sources.forEach(function (source) { source.close(); });
    sources = [];
  });

  // JSON events go to the page's handlers.
  document.addEventListener("htmx:sseOpen", function (evt) {
    var source = evt.detail && evt.detail.source;
    if (!source || source.titanWired) return;
    source.titanWired = true;
    if (sources.indexOf(source) < 0) sources.push(source);
    JSON_EVENTS.forEach(function (name) {
      source.addEventListener(name, function (e) {
        var value;
        try { value = JSON.parse(e.data); } catch (err) { return; }
        Titan.emit(name, value);
      });
    });
  });

  // Any page: run states and counts change live wherever a run is shown.
  Titan.on("runs", function (runs) {
    runs.forEach(function (run) {
      Titan.byAttr("data-run-state", run.id).forEach(function (el) { Titan.setState(el, run.state); });
      Titan.byAttr("data-run-counts", run.id).forEach(function (el) {
        Titan.counts(el, run.counts, el.classList.contains("big"));
      });
    });
  });

  Titan.on("trouble", function (value) { Titan.flash("error", value.error || "live updates stopped"); });

  // What someone types in a live region (an approval's comment) survives the region being swapped.
  var kept = null;
  document.addEventListener("htmx:sseBeforeMessage", function () {
    kept = { values: {}, focus: document.activeElement ? document.activeElement.id : "" };
    document.querySelectorAll("[data-keep]").forEach(function (input) {
      if (input.id && input.value) kept.values[input.id] = input.value;
    });
  });
  document.addEventListener("htmx:sseMessage", function () {
    if (!kept) return;
    Object.keys(kept.values).forEach(function (id) {
      var input = document.getElementById(id);
      if (input && !input.value) input.value = kept.values[id];
    });
    if (kept.focus) {
      var focused = document.getElementById(kept.focus);
      if (focused && focused !== document.activeElement) focused.focus();
    }
    kept = null;
  });
})();
