/* The device page's telemetry section: a uPlot chart per metric, the range picker, the
   time zone, drag-to-zoom, the pause of live updates and the same points as tables.

   The section ([data-charts], loaded by htmx) is set up when this script runs and after
   every htmx swap. Each chart fetches GET /console/devices/{id}/series (raw readings, or
   averages with their minimum and maximum when the range holds too many) and appends
   the device's live readings (the page's "fw:telemetry" events) while the range ends now
   and live updates are not paused; after a reconnection ("fw:connected") it fetches only
   what it missed.

   For tests and measurements: each chart (figure[data-metric]) carries data-drawn (draws
   so far), data-points, data-last-value, data-last-time, data-interval ("raw" or "30m"…),
   data-from/data-to; the section carries data-range, data-span (seconds) and, once every
   chart of a fetch has drawn, data-drawn (the fetch's number) and the performance mark
   "fieldwatch:charts-drawn". */
(function () {
  "use strict";
  var FW = window.Fieldwatch = window.Fieldwatch || {};
  if (FW.charts) { FW.charts.scan(); return; }

  var RANGES = {"1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000};
  var RANGE_TEXT = {"1h": "last hour", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"};
  var BROWSER_TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  var TZ_KEY = "fieldwatch-chart-tz";
  var HEIGHT = 220;
  var number = new Intl.NumberFormat(undefined, {maximumFractionDigits: 3});
  var active = null;

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function cssVar(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }
  function withAlpha(color, alpha) {
    var m = /^#([0-9a-f]{6})$/i.exec(color);
    if (!m) { return color; }
    var n = parseInt(m[1], 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  function isoOf(seconds) { return new Date(seconds * 1000).toISOString(); }
  function dateFormat(tz) {
    return new Intl.DateTimeFormat(undefined, {timeZone: tz, dateStyle: "medium", timeStyle: "medium"});
  }
  /* "YYYY-MM-DDTHH:MM", the wall-clock time in tz (a datetime-local input's value). */
  function wallTime(seconds, tz) {
    var parts = {};
    new Intl.DateTimeFormat("en-GB", {timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23"}).formatToParts(new Date(seconds * 1000))
      .forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + "T" + parts.hour + ":" + parts.minute;
  }
  function intervalText(interval) {
    if (!interval) { return "raw readings"; }
    var m = /^(\d+)(mo|m|h|d|w)$/.exec(interval);
    var unit = {m: "minute", h: "hour", d: "day", w: "week", mo: "month"}[m[2]];
    return (m[1] === "1" ? unit : m[1] + "-" + unit) + " averages (band: minimum to maximum)";
  }

  /* GET a JSON document; an error carries the console's problem fragment (HTML). */
  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"HX-Request": "true"}}).then(function (r) {
      var redirect = r.headers.get("HX-Redirect");
      if (redirect) { window.location.assign(redirect); throw new Error("signed out"); }
      if (r.ok) { return r.json(); }
      return r.text().then(function (html) {
        var error = new Error("HTTP " + r.status);
        error.html = (r.headers.get("content-type") || "").indexOf("text/html") === 0 ? html : "";
        throw error;
      });
    });
  }

  /* ---- one chart ---------------------------------------------------------------- */

  function Chart(section, figure) {
    this.section = section;
    this.figure = figure;
    this.metric = figure.dataset.metric;
    this.unit = figure.dataset.unit;
    this.label = figure.dataset.label;
    this.plot = figure.querySelector("[data-plot]");
    this.tableBox = figure.querySelector("[data-table]");
    this.latest = figure.querySelector("[data-latest]");
    this.u = null;
    this.data = null;      // uPlot's columns: [t, v] or [t, avg, min, max]
    this.counts = null;    // readings per bucket (aggregated)
    this.interval = null;
    this.step = null;      // a bucket's seconds (aggregated), null for raw readings
    this.draws = 0;
    this.awaitingDraw = false;
  }

  Chart.prototype.format = function (v) {
    return v === null || v === undefined ? "—" : number.format(v) + (this.unit ? " " + this.unit : "");
  };

  Chart.prototype.options = function () {
    var chart = this, section = this.section, tz = section.tz;
    var fg = cssVar("--fg", "#1b1f24"), grid = withAlpha(cssVar("--border", "#9ca3af"), 0.35);
    var accent = cssVar("--accent", "#0b57d0");
    function axis() {
      return {stroke: fg, grid: {stroke: grid, width: 1}, ticks: {stroke: grid, width: 1}};
    }
    var valueAxis = axis();
    valueAxis.size = 64;
    valueAxis.values = function (u, splits) { return splits.map(function (v) { return number.format(v); }); };
    var value = function (u, v) { return chart.format(v); };
    var series = [
      {label: "Time"},
      {label: this.step ? "Average" : "Value", stroke: accent, width: 2, value: value, spanGaps: false}
    ];
    var options = {
      width: Math.max(this.plot.clientWidth, 280), height: HEIGHT,
      scales: {x: {time: true, range: function () { return [section.view.from, section.view.to]; }}},
      series: series,
      axes: [axis(), valueAxis],
      cursor: {drag: {x: true, y: false, setScale: false}, bind: {dblclick: function () { return null; }}},
      hooks: {
        setSelect: [function (u) { chart.selected(u); }],
        draw: [function () { chart.drawn(); }]
      }
    };
    if (this.step) {
      var band = withAlpha(accent, 0.45);
      series.push({label: "Minimum", stroke: band, width: 1, value: value, spanGaps: false});
      series.push({label: "Maximum", stroke: band, width: 1, value: value, spanGaps: false});
      options.bands = [{series: [3, 2], fill: withAlpha(accent, 0.15)}];
    }
    if (tz !== BROWSER_TZ) {
      options.tzDate = function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), tz); };
    }
    return options;
  };

  Chart.prototype.build = function () {
    if (this.u) { this.u.destroy(); }
    this.u = new window.uPlot(this.options(), this.data, this.plot);
    var section = this.section;
    this.u.over.addEventListener("dblclick", function () { section.resetZoom(); });
  };

  /* A fetched document: the chart's points from now on. */
  Chart.prototype.set = function (body) {
    this.interval = body.interval;
    this.step = body.interval ? body.step : null;
    this.data = this.step ? [body.t, body.v, body.lo, body.hi] : [body.t, body.v];
    this.counts = this.step ? body.n : null;
    this.figure.dataset.interval = body.interval || "raw";
    this.figure.dataset.from = isoOf(this.section.view.from);
    this.figure.dataset.to = isoOf(this.section.view.to);
    this.awaitingDraw = true;
    this.build();
    this.changed();
  };

  Chart.prototype.drawn = function () {
    this.draws += 1;
    this.figure.dataset.drawn = String(this.draws);
    if (this.awaitingDraw) {
      this.awaitingDraw = false;
      this.section.chartDrawn(this);
    }
  };

  Chart.prototype.selected = function (u) {
    var sel = u.select;
    if (sel.width < 3) { return; }
    var a = u.posToVal(sel.left, "x"), b = u.posToVal(sel.left + sel.width, "x");
    u.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
    this.section.zoom(a, b);
  };

  Chart.prototype.lastTime = function () {
    var t = this.data ? this.data[0] : [];
    return t.length ? t[t.length - 1] : null;
  };

  /* A live reading: a point in time order (raw), or folded into its bucket (aggregated:
     the buckets run up to now, so a reading usually lands in one already there). */
  Chart.prototype.append = function (t, v) {
    if (!this.data) { return; }
    var d = this.data, n = d[0].length, i = n - 1;
    while (i >= 0 && d[0][i] > t) { i -= 1; }  // the last point (bucket start) at or before t
    if (!this.step) {
      if (i >= 0 && d[0][i] === t) { return; }  // heard already
      d[0].splice(i + 1, 0, t); d[1].splice(i + 1, 0, v);
    } else if (i >= 0 && t < d[0][i] + this.step) {
      var c = this.counts[i] || 0;
      d[1][i] = c && d[1][i] !== null ? (d[1][i] * c + v) / (c + 1) : v;
      d[2][i] = d[2][i] === null ? v : Math.min(d[2][i], v);
      d[3][i] = d[3][i] === null ? v : Math.max(d[3][i], v);
      this.counts[i] = c + 1;
    } else if (i === n - 1) {  // after the last bucket: a new one, on the same grid
      var last = n ? d[0][n - 1] : null;
      var start = last === null ? t - (t % this.step) : last + Math.floor((t - last) / this.step) * this.step;
      d[0].push(start); d[1].push(v); d[2].push(v); d[3].push(v); this.counts.push(1);
    }
  };

  /* Drop what slid out of the range, redraw, and update the figures and the table. */
  Chart.prototype.refresh = function (from) {
    if (!this.data) { return; }
    var d = this.data, step = this.step || 0, drop = 0;
    while (drop < d[0].length && d[0][drop] + step < from) { drop += 1; }
    if (drop) {
      d.forEach(function (column) { column.splice(0, drop); });
      if (this.counts) { this.counts.splice(0, drop); }
    }
    this.u.setData(d);
    this.changed();
  };

  /* The raw readings since ``after`` (this chart's last point, or its last bucket's
     start: that bucket is made again from its readings). */
  Chart.prototype.missed = function (body, after) {
    if (after === undefined) { return; }
    if (this.step) {
      var i = this.data[0].length - 1;
      this.data.forEach(function (column) { column.splice(i, 1); });
      this.counts.splice(i, 1);
    }
    for (var k = 0; k < body.t.length; k += 1) {
      var t = body.t[k];
      if (body.v[k] !== null && (t > after || (this.step && t >= after))) { this.append(t, body.v[k]); }
    }
  };

  Chart.prototype.changed = function () {
    var d = this.data, points = 0, last = -1;
    for (var i = 0; i < d[1].length; i += 1) {
      if (d[1][i] !== null) { points += 1; last = i; }
    }
    var fig = this.figure;
    fig.dataset.points = String(points);
    if (last >= 0) {
      fig.dataset.lastValue = String(d[1][last]);
      fig.dataset.lastTime = isoOf(d[0][last]);
      this.latest.textContent = (this.step ? "Latest average: " : "Latest: ") + this.format(d[1][last]) +
        " · " + dateFormat(this.section.tz).format(new Date(d[0][last] * 1000));
    } else {
      delete fig.dataset.lastValue;
      delete fig.dataset.lastTime;
      this.latest.textContent = "No readings in this range.";
    }
    if (this.section.showTable) { this.renderTable(); }
  };

  Chart.prototype.renderTable = function () {
    var d = this.data, fmt = dateFormat(this.section.tz), agg = !!this.step;
    var head = agg ? ["Interval start", "Average", "Minimum", "Maximum", "Readings"] : ["Time", "Value"];
    var rows = [];
    for (var i = d[0].length - 1; i >= 0; i -= 1) {
      if (d[1][i] === null) { continue; }
      var when = new Date(d[0][i] * 1000);
      var iso = when.toISOString().replace(".000Z", "Z");
      var cells = ['<th scope="row"><time datetime="' + iso + '" title="' + iso + ' UTC">' +
                   escapeHtml(fmt.format(when)) + "</time></th>",
                   '<td class="num">' + escapeHtml(this.format(d[1][i])) + "</td>"];
      if (agg) {
        cells.push('<td class="num">' + escapeHtml(this.format(d[2][i])) + "</td>",
                   '<td class="num">' + escapeHtml(this.format(d[3][i])) + "</td>",
                   '<td class="num">' + number.format(this.counts[i]) + "</td>");
      }
      rows.push("<tr>" + cells.join("") + "</tr>");
    }
    var caption = escapeHtml(this.label) + ": " + escapeHtml(this.section.describe()) + ", " +
      escapeHtml(intervalText(this.interval)) + ", newest first";
    this.tableBox.innerHTML = "<table><caption>" + caption + "</caption><thead><tr>" +
      head.map(function (h, i) { return '<th scope="col"' + (i ? ' class="num"' : "") + ">" + h + "</th>"; }).join("") +
      "</tr></thead><tbody>" + (rows.join("") || '<tr><td colspan="' + head.length + '">No readings in this range.</td></tr>') +
      "</tbody></table>";
  };

  Chart.prototype.destroy = function () { if (this.u) { this.u.destroy(); this.u = null; } };

  /* ---- the section: the view (range, zoom, time zone), fetching, live ---------- */

  function initialView(root) {
    var q = new URLSearchParams(window.location.search);
    var range = q.get("range");
    if (RANGES[range]) { return {range: range}; }
    if (q.get("from") && q.get("to")) { return {range: null, text: {from: q.get("from"), to: q.get("to")}}; }
    return {range: RANGES[root.dataset.defaultRange] ? root.dataset.defaultRange : "1h"};
  }

  function initialTz() {
    var q = new URLSearchParams(window.location.search).get("tz"), saved = null;
    try { saved = window.localStorage.getItem(TZ_KEY); } catch (e) { saved = null; }
    return q || saved || "";
  }

  function Section(root) {
    var self = this;
    this.root = root;
    this.deviceId = root.dataset.deviceId;
    this.base = "/console/devices/" + root.dataset.deviceId;
    this.status = root.querySelector("[data-chart-status]");
    this.errors = root.querySelector(":scope > [data-errors]");
    this.form = root.querySelector("[data-custom-range]");
    this.resetButton = root.querySelector("[data-reset-zoom]");
    this.charts = [];
    this.byMetric = {};
    root.querySelectorAll("figure[data-metric]").forEach(function (fig) {
      var chart = new Chart(self, fig);
      self.charts.push(chart);
      self.byMetric[chart.metric] = chart;
    });
    this.view = initialView(root);
    this.view.from = this.view.to = 0;
    this.paused = false;
    this.showTable = false;
    this.generation = 0;
    this.loading = false;
    this.loaded = false;
    this.queue = [];
    this.skew = 0;   // the server's clock minus the browser's, in seconds
    this.maxPoints = Number(root.dataset.maxPoints) || 2000;
    this.setUpTz(root.querySelector("[data-tz]"));
    this.bind();
    if (window.ResizeObserver) {
      this.resizer = new ResizeObserver(function () { self.resize(); });
      this.resizer.observe(root);
    }
    this.load();
  }

  Section.prototype.setUpTz = function (select) {
    var self = this, chosen = initialTz();
    select.options[0].textContent = "Browser's time zone (" + BROWSER_TZ + ")";
    var zones = Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [];
    var fragment = document.createDocumentFragment();
    zones.forEach(function (zone) {
      if (zone === "UTC") { return; }
      var option = document.createElement("option");
      option.value = option.textContent = zone;
      fragment.appendChild(option);
    });
    select.appendChild(fragment);
    if (chosen && chosen !== BROWSER_TZ && Array.prototype.some.call(select.options, function (o) { return o.value === chosen; })) {
      select.value = chosen;
    }
    this.tz = select.value || BROWSER_TZ;
    select.addEventListener("change", function () {
      self.tz = select.value || BROWSER_TZ;
      try { window.localStorage.setItem(TZ_KEY, select.value); } catch (e) { /* private mode */ }
      if (!self.view.range && self.view.text) { self.view.text = null; }  // keep the same instants
      self.load();
    });
  };

  Section.prototype.bind = function () {
    var self = this, root = this.root;
    root.querySelectorAll("[data-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        delete self.form.dataset.edited;
        self.show({range: button.dataset.range});
      });
    });
    this.form.addEventListener("input", function () { self.form.dataset.edited = "true"; });
    this.form.addEventListener("submit", function (e) {
      e.preventDefault();
      delete self.form.dataset.edited;
      self.show({range: null, text: {from: self.form.elements.from.value, to: self.form.elements.to.value}});
    });
    var pause = root.querySelector("[data-pause]");
    pause.addEventListener("click", function () {
      self.paused = !self.paused;
      pause.setAttribute("aria-pressed", String(self.paused));
      if (!self.paused) { self.catchUp(); }
      self.say();
    });
    var table = root.querySelector("[data-table-toggle]");
    table.addEventListener("click", function () {
      self.showTable = !self.showTable;
      table.setAttribute("aria-pressed", String(self.showTable));
      self.charts.forEach(function (chart) {
        chart.plot.hidden = self.showTable;
        chart.tableBox.hidden = !self.showTable;
        if (self.showTable && chart.data) { chart.renderTable(); }
      });
      if (!self.showTable) { self.resize(); }
    });
    this.resetButton.addEventListener("click", function () { self.resetZoom(); });
  };

  Section.prototype.live = function () { return !!this.view.range && !this.view.zoom; };
  Section.prototype.now = function () { return Date.now() / 1000 + this.skew; };

  Section.prototype.describe = function () {
    var fmt = dateFormat(this.tz);
    var text = this.live() ? RANGE_TEXT[this.view.range] + ", ending now" :
      "from " + fmt.format(new Date(this.view.from * 1000)) + " to " + fmt.format(new Date(this.view.to * 1000));
    return (this.view.zoom ? "zoomed in, " : "") + text + " (" + this.tz + ")";
  };

  Section.prototype.say = function (extra) {
    var live = !this.live() ? "live updates off for a range that does not end now" :
      this.paused ? "live updates paused" : "live";
    this.status.textContent = (extra || "Showing the " + this.describe()) + "; " + live + ".";
  };

  Section.prototype.show = function (view) {
    view.from = this.view.from;  // until the new points arrive
    view.to = this.view.to;
    this.view = view;
    this.load();
  };

  Section.prototype.zoom = function (a, b) {
    if (!(b - a >= 1)) { return; }
    var back = this.view.zoom || {range: this.view.range, text: this.view.text};
    this.show({range: null, text: null, zoom: back, at: [a, b]});
  };

  Section.prototype.resetZoom = function () {
    if (this.view.zoom) { this.show(this.view.zoom); }
  };

  /* At most a point per pixel of the chart's width (a few thousand at most). */
  Section.prototype.points = function () {
    var width = this.charts.length ? this.charts[0].plot.clientWidth : 0;
    return String(Math.min(this.maxPoints, Math.max(100, Math.round(width || this.maxPoints))));
  };

  /* The series request of the view, for every metric (one request for all the charts). */
  Section.prototype.query = function () {
    var q = new URLSearchParams({tz: this.tz, points: this.points()}), v = this.view;
    if (v.range && !v.zoom) { q.set("last", v.range); }
    else if (v.text) { q.set("from", v.text.from); q.set("to", v.text.to); }
    else { q.set("from", isoOf(v.at ? v.at[0] : v.from)); q.set("to", isoOf(v.at ? v.at[1] : v.to)); }
    return this.base + "/series?" + q.toString();
  };

  Section.prototype.remember = function () {
    var q = new URLSearchParams(window.location.search), v = this.view;
    ["range", "from", "to", "tz"].forEach(function (k) { q.delete(k); });
    if (v.range && !v.zoom) { q.set("range", v.range); }
    else if (v.text) { q.set("from", v.text.from); q.set("to", v.text.to); }
    else { q.set("from", isoOf(v.from)); q.set("to", isoOf(v.to)); }
    if (this.tz !== BROWSER_TZ) { q.set("tz", this.tz); }
    window.history.replaceState(window.history.state, "", window.location.pathname + "?" + q.toString() + window.location.hash);
  };

  Section.prototype.controls = function () {
    var v = this.view, root = this.root;
    root.querySelectorAll("[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(!!v.range && !v.zoom && b.dataset.range === v.range));
    });
    this.resetButton.hidden = !v.zoom;
    root.dataset.range = v.zoom ? "zoom" : (v.range || "custom");
    root.dataset.span = String(Math.round(v.to - v.from));
    var form = this.form;
    if (v.from && v.to && !form.contains(document.activeElement) && !form.dataset.edited) {
      this.form.elements.from.value = wallTime(v.from, this.tz);
      this.form.elements.to.value = wallTime(v.to, this.tz);
    }
  };

  Section.prototype.fail = function (error, region) {
    region = region || this.errors;
    if (error.html) { region.innerHTML = error.html; return; }
    region.innerHTML = '<p class="error"></p>';
    region.firstChild.textContent = error.message === "signed out" ? "" :
      "The readings could not be fetched; check the connection and try again.";
  };

  /* Fetch every chart's points for the view; draw each as it arrives. */
  /* Fetch the view's points for every chart, then draw them. */
  Section.prototype.load = function () {
    var self = this, gen = ++this.generation;
    this.loading = true;
    this.queue = [];
    this.errors.textContent = "";
    this.form.querySelector("[data-errors]").textContent = "";
    this.root.removeAttribute("data-drawn");
    this.busy(true);
    this.say("Loading…");
    if (!this.charts.length) { this.loading = false; this.busy(false); this.controls(); this.say(); return; }
    getJSON(this.query()).then(function (body) {
      if (gen !== self.generation) { return; }
      if (self.live()) { self.skew = body.to - Date.now() / 1000; }
      self.view.from = body.from;
      self.view.to = body.to;
      var known = body.series.filter(function (s) { return self.byMetric[s.metric]; });
      self.waiting = known.length;
      self.loading = false;
      self.busy(false);
      self.loaded = true;
      self.controls();
      self.remember();
      self.say();
      known.forEach(function (s) { self.byMetric[s.metric].set(s); });
      if (!known.length) { self.chartDrawn(); }
      var queued = self.queue;
      self.queue = [];
      queued.forEach(function (item) { item[0].append(item[1], item[2]); });
      if (queued.length) { self.slide(); }
      if (known.length < body.series.length) { self.reload(); }  // a metric new to the page
    }).catch(function (error) {
      if (gen !== self.generation) { return; }
      if (!error.html && window.console) { window.console.error(error); }
      self.loading = false;
      self.busy(false);
      self.fail(error, self.view.text && !self.view.zoom ? self.form.querySelector("[data-errors]") : null);
      self.say("The charts could not be updated");
    });
  };

  /* The section that holds the charts (the device page's) is busy while they load. */
  Section.prototype.busy = function (busy) {
    var holder = this.root.closest("section");
    if (holder) { holder.setAttribute("aria-busy", String(busy)); }
  };

  Section.prototype.chartDrawn = function () {
    this.waiting -= 1;
    if (this.waiting <= 0) {
      this.root.dataset.drawn = String(this.generation);
      if (window.performance && performance.mark) { performance.mark("fieldwatch:charts-drawn"); }
    }
  };

  /* Move a live range on to now and redraw the charts that changed. */
  Section.prototype.slide = function (changed) {
    var span = RANGES[this.view.range], newest = 0;
    (changed || this.charts).forEach(function (c) { newest = Math.max(newest, c.lastTime() || 0); });
    this.view.to = Math.max(this.now(), newest);
    this.view.from = this.view.to - span;
    var from = this.view.from;
    this.charts.forEach(function (c) { if (c.u) { c.refresh(from); } });
    this.root.dataset.span = String(Math.round(this.view.to - this.view.from));
  };

  Section.prototype.onTelemetry = function (metrics) {
    if (this.paused || !this.live()) { return; }
    var self = this, unknown = false, changed = [];
    Object.keys(metrics || {}).forEach(function (name) {
      var point = metrics[name] || {}, v = point.value;
      if (typeof v === "boolean") { v = v ? 1 : 0; }
      if (typeof v !== "number") { return; }
      var chart = self.byMetric[name], t = Date.parse(point.timestamp) / 1000;
      if (!chart) { unknown = true; return; }
      if (isNaN(t)) { return; }
      if (self.loading) { self.queue.push([chart, t, v]); return; }
      chart.append(t, v);
      changed.push(chart);
    });
    if (changed.length) { this.slide(changed); }
    if (unknown) { this.reload(); }
  };

  /* After a reconnection or a pause: fetch what was missed since each chart's last point
     (raw readings are appended; too many of them and the whole range is fetched again). */
  Section.prototype.catchUp = function () {
    if (!this.loaded || this.loading || this.paused || !this.live()) { return; }
    var self = this, gen = this.generation, since = {}, from = Infinity;
    this.charts.forEach(function (chart) {
      var last = chart.lastTime();
      if (last !== null) { since[chart.metric] = last; from = Math.min(from, last); }
    });
    if (from === Infinity) { this.load(); return; }
    var q = new URLSearchParams({tz: this.tz, from: isoOf(from)});
    getJSON(this.base + "/series?" + q.toString()).then(function (body) {
      if (gen !== self.generation) { return; }
      if (body.series.some(function (s) { return s.interval; })) { self.load(); return; }
      body.series.forEach(function (s) {
        var chart = self.byMetric[s.metric];
        if (chart && chart.data) { chart.missed(s, since[s.metric]); }
      });
      self.slide();
    }).catch(function (error) { self.fail(error); });
  };

  /* A metric without a chart: the section again (the view stays, it is in the URL). */
  Section.prototype.reload = function () {
    if (this.reloading || !window.htmx) { return; }
    this.reloading = true;
    this.remember();
    window.htmx.ajax("GET", this.base + "/charts", {target: this.root.parentElement, swap: "innerHTML"});
  };

  Section.prototype.resize = function () {
    this.charts.forEach(function (c) {
      if (c.u && !c.plot.hidden && c.plot.clientWidth && c.plot.clientWidth !== c.u.width) {
        c.u.setSize({width: c.plot.clientWidth, height: HEIGHT});
      }
    });
  };

  Section.prototype.redraw = function () {
    this.charts.forEach(function (c) { if (c.data) { c.build(); } });
  };

  Section.prototype.destroy = function () {
    this.generation += 1;
    if (this.resizer) { this.resizer.disconnect(); }
    this.charts.forEach(function (c) { c.destroy(); });
  };

  /* ---- wiring ------------------------------------------------------------------- */

  function scan() {
    var root = document.querySelector("[data-charts]:not([data-ready])");
    if (!root || !window.uPlot) { return; }
    root.dataset.ready = "true";
    if (active) { active.destroy(); }
    active = new Section(root);
  }

  document.addEventListener("fw:telemetry", function (e) {
    var message = e.detail || {};
    if (active && message.device_id === active.deviceId) { active.onTelemetry(message.metrics); }
  });
  document.addEventListener("fw:connected", function () { if (active) { active.catchUp(); } });
  document.addEventListener("htmx:afterSettle", scan);
  new MutationObserver(function () { if (active) { active.redraw(); } })
    .observe(document.documentElement, {attributes: true, attributeFilter: ["data-theme"]});
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      if (active) { active.redraw(); }
    });
  }

  FW.charts = {scan: scan, active: function () { return active; }};
  if (window.uPlot) {
    scan();
  } else {  // loaded without the fragment's uPlot: fetch it first
    var script = document.createElement("script");
    script.src = "/static/vendor/uplot/uPlot.iife.min.js";
    script.onload = scan;
    document.head.appendChild(script);
  }
}());
