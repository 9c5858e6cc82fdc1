/* The overview's sparklines: CPU and memory % of each worker, from the live `loadhistory` (on
   connect) and `load` (each worker update) events, drawn with uPlot. The workers table is swapped
   live; the charts are moved into the new row's cell, not drawn again. */
(function () {
  "use strict";
  var KEEP = 180;
  var series = {};
  var charts = {};

  function options() {
    return {
      width: 120, height: 32, pxAlign: false,
      cursor: { show: false }, legend: { show: false }, select: { show: false },
      scales: { x: { time: false }, y: { range: [0, 100] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: "#2563eb", width: 1, label: "CPU %" }, { stroke: "#d97706", width: 1, label: "memory %" }]
    };
  }

  function attach() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-spark]").forEach(function (cell) {
      var id = cell.getAttribute("data-spark");
      var s = series[id];
      if (!s || s.t.length < 2) return;
      var data = [s.t, s.cpu, s.mem];
      var chart = charts[id];
      if (!chart) {
        charts[id] = new uPlot(options(), data, cell);
        cell.setAttribute("title", "CPU % (blue) and memory % (orange), the last few minutes");
      } else {
        if (chart.root.parentNode !== cell) cell.appendChild(chart.root);
        chart.setData(data);
      }
    });
    Object.keys(charts).forEach(function (id) {
      if (!series[id]) { charts[id].destroy(); delete charts[id]; }
    });
  }

  window.Titan.on("loadhistory", function (history) {
    series = {};
    Object.keys(history).forEach(function (id) {
      series[id] = { t: history[id][0], cpu: history[id][1], mem: history[id][2] };
    });
    attach();
  });

  window.Titan.on("load", function (latest) {
    Object.keys(series).forEach(function (id) { if (!(id in latest)) delete series[id]; });
    Object.keys(latest).forEach(function (id) {
      var sample = latest[id];
      var s = series[id] = series[id] || { t: [], cpu: [], mem: [] };
      if (s.t.length && s.t[s.t.length - 1] >= sample[0]) return;
      s.t.push(sample[0]); s.cpu.push(sample[1]); s.mem.push(sample[2]);
      if (s.t.length > KEEP) { s.t.shift(); s.cpu.shift(); s.mem.shift(); }
    });
    attach();
  });

  document.addEventListener("htmx:sseMessage", function (evt) {
    if (evt.target && evt.target.id === "workers") attach();
  });
})();
