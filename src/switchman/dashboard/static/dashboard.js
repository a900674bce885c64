// switchman dashboard: draws the charts whose data the server put in <script id="charts">.
(function () {
  "use strict";
  var el = document.getElementById("charts");
  if (!el || typeof uPlot === "undefined") return;
  var charts = JSON.parse(el.textContent || "{}");
  var colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  Object.keys(charts).forEach(function (id) {
    var box = document.getElementById(id);
    var c = charts[id];
    if (!box || !c || !c.x) return;
    if (!c.x.length) {
      box.textContent = "No data in this range yet.";
      box.className += " empty";
      return;
    }
    var names = Object.keys(c.series);
    var data = [c.x].concat(names.map(function (n) { return c.series[n]; }));
    var series = [{}].concat(names.map(function (n, i) {
      var s = { label: n, stroke: colors[i % colors.length], width: 2, spanGaps: true };
      if (c.bars && uPlot.paths && uPlot.paths.bars) {
        s.paths = uPlot.paths.bars({ size: [0.6, 40] });
        s.fill = colors[i % colors.length] + "55";
      }
      return s;
    }));
    var width = Math.max(320, box.clientWidth || 800);
    box.setAttribute("data-points", String(c.x.length));
    new uPlot({ width: width, height: 220, series: series, scales: { x: { time: true } } }, data, box);
  });
})();
