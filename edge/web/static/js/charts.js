// Draws every <div class="chart" data-chart='{...}'> with uPlot (spec: edge/web/pages/charts.py): lines or bars,
// a shaded normal band (bands) and shaded time ranges (marks, e.g. temperature excursions). Redrawn after htmx swaps.
(function () {
  "use strict";
  var COLORS = ["#0b5cad", "#cf222e", "#1a7f37", "#9a6700", "#8250df"];

  function bandsPlugin(spec) {
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          (spec.bands || []).forEach(function (band) {
            var lo = band.lo == null ? u.scales.y.min : band.lo;
            var hi = band.hi == null ? u.scales.y.max : band.hi;
            var y0 = u.valToPos(hi, "y", true), y1 = u.valToPos(lo, "y", true);
            ctx.fillStyle = "rgba(26,127,55,0.10)";
            ctx.fillRect(u.bbox.left, y0, u.bbox.width, y1 - y0);
          });
          (spec.marks || []).forEach(function (mark) {
            var x0 = u.valToPos(mark.from, "x", true), x1 = u.valToPos(mark.to, "x", true);
            ctx.fillStyle = "rgba(207,34,46,0.15)";
            ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
          });
          ctx.restore();
        }]
      }
    };
  }

  function draw(node) {
    if (node.dataset.drawn === "1" || !window.uPlot) return;
    var spec;
    try { spec = JSON.parse(node.getAttribute("data-chart")); } catch (e) { return; }
    node.dataset.drawn = "1";
    var bars = spec.kind === "bars";
    var time = spec.time != null ? spec.time : !bars;  // bars over dates: "time": true
    var series = [{}].concat((spec.series || []).map(function (s, i) {
      var color = COLORS[i % COLORS.length];
      var out = { label: s.label, stroke: color, width: 2, spanGaps: false, points: { show: !bars && s.values.length < 60 } };
      if (bars) { out.fill = color + "99"; out.paths = uPlot.paths.bars({ size: [0.7, 40] }); }
      return out;
    }));
    var data = [spec.x].concat((spec.series || []).map(function (s) { return s.values; }));
    var ys = [];
    data.slice(1).forEach(function (v) { v.forEach(function (x) { if (x != null) ys.push(x); }); });
    (spec.bands || []).forEach(function (b) { if (b.lo != null) ys.push(b.lo); if (b.hi != null) ys.push(b.hi); });
    var min = ys.length ? Math.min.apply(null, ys) : 0, max = ys.length ? Math.max.apply(null, ys) : 1;
    var pad = (max - min) * 0.1 || 1;
    var width = Math.max(240, node.clientWidth || 300);
    var tz = document.body.getAttribute("data-tz");
    var opts = {
      // Times on the axis in the store's time zone, whatever the viewer's computer says.
      tzDate: tz ? function (ts) { return uPlot.tzDate(new Date(ts * 1e3), tz); } : undefined,
      width: width,
      height: 160,
      scales: { x: spec.range ? { time: time, range: spec.range } : { time: time }, y: { range: [bars ? Math.min(0, min) : min - pad, max + pad] } },
      series: series,
      axes: [{}, { label: spec.unit || "" }],
      legend: { show: false },
      plugins: [bandsPlugin(spec)]
    };
    new uPlot(opts, data, node);
  }

  function drawAll(root) {
    (root || document).querySelectorAll(".chart[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  window.addEventListener("load", function () { drawAll(document); });
})();
