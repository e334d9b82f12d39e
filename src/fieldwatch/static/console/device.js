/* The device page's one live connection: it listens to the open device only and passes
   every event on to the page's sections as a DOM event on document, named "fw:<event>"
   (fw:telemetry, fw:presence, fw:device_status, fw:alert, fw:command, fw:config,
   fw:firmware) with the
   message as its detail; "fw:connected" after every (re)connection, so that a section
   can fetch what it missed. */
(function () {
  "use strict";
  var root = document.getElementById("device");
  var id = root.dataset.deviceId;

  function pass(name) {
    return function (message) {
      document.dispatchEvent(new CustomEvent("fw:" + name, {detail: message}));
    };
  }

  var on = {};
  ["telemetry", "presence", "device_status", "alert", "command", "config", "firmware"].forEach(function (n) {
    on[n] = pass(n);
  });
  window.Fieldwatch.device = {id: id};
  window.Fieldwatch.device.live = window.Fieldwatch.live({
    status: document.getElementById("live"),
    devices: [id],
    on: on,
    connected: function () { pass("connected")({}); }
  });
}());

/* The device page's own parts (identity, lifecycle, connectivity and latest values,
   alerts, agent tokens, audit log), kept live from the events above:
   - fw:presence and fw:telemetry update connectivity, last seen, battery, signal and the
     latest values in place (a metric not on the page yet fetches the part again);
   - fw:device_status shows the new status at once and fetches the lifecycle part, the
     identity and the newest audit log again; the lifecycle forms are left alone while
     the user is filling one in (a notice says that the status changed);
   - fw:alert fetches the alerts part, fw:firmware the firmware part; fw:connected
     fetches what may have been missed.
   Also: the new token's copy button, and where the focus goes when a part it was in
   is replaced. */
(function () {
  "use strict";
  var root = document.getElementById("device");
  var base = "/console/devices/" + root.dataset.deviceId;
  var connections = 0;
  var timers = {};
  var inFlight = {};
  var again = {};

  function number(v) {
    if (typeof v === "boolean") { return v ? "yes" : "no"; }
    if (typeof v === "number") {
      var text = v.toFixed(3).replace(/\.?0+$/, "");
      return text === "-0" ? "0" : text;
    }
    return v === null || v === undefined ? "–" : String(v);
  }

  function byId(id) { return document.getElementById(id); }

  /* Fetch a part again and put it in place: several calls in a burst make one request,
     and a call while the part's request is on its way makes one more after it. */
  function fetchPart(part) {
    if (!byId(part)) { return; }
    if (inFlight[part]) { again[part] = true; return; }
    inFlight[part] = true;
    function done() {
      inFlight[part] = false;
      if (again[part]) { again[part] = false; fetchPart(part); }
    }
    var path = {audit: "log", "firmware-part": "firmware"}[part] || part;
    var spec = {source: "#" + part, target: "#" + part, swap: "outerHTML"};
    window.htmx.ajax("GET", base + "/" + path, spec).then(done, done);
  }

  function refresh(part, delay) {
    window.clearTimeout(timers[part]);
    timers[part] = window.setTimeout(function () { fetchPart(part); }, delay || 0);
  }

  function refreshLog() {
    var audit = byId("audit");
    if (audit && audit.dataset.newest === "true") { refresh("audit", 100); }
  }

  function setTime(container, iso) {
    if (!container || !iso) { return; }
    container.textContent = "";
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.dataset.local = "";
    t.textContent = iso;
    container.appendChild(t);
    window.Fieldwatch.localTimes(container);
  }

  /* --- lifecycle ------------------------------------------------------------------ */

  function lifecycleBusy() {
    var section = byId("lifecycle");
    if (!section) { return false; }
    var active = document.activeElement;
    var typing = active && section.contains(active) && active.matches("input, textarea, select");
    return Boolean(typing || section.querySelector("form[data-dirty]"));
  }

  function stale(status) {
    var notice = byId("lifecycle-stale");
    if (!notice) { return; }
    notice.querySelector("[data-new-status]").textContent = status.replace(/_/g, " ");
    notice.hidden = false;
  }

  document.addEventListener("input", function (e) {
    var form = e.target.closest ? e.target.closest("#lifecycle form") : null;
    if (form) { form.dataset.dirty = "true"; }
  });

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-refresh-lifecycle]") : null;
    if (!button) { return; }
    byId("lifecycle").querySelectorAll("form[data-dirty]").forEach(function (f) {
      delete f.dataset.dirty;
    });
    refresh("lifecycle");
  });

  /* A fetched lifecycle part does not replace forms being filled in. */
  document.addEventListener("htmx:beforeSwap", function (e) {
    var config = e.detail.requestConfig;
    var target = e.detail.target;
    if (!config || config.verb !== "get" || !target || target.id !== "lifecycle") { return; }
    if (e.detail.xhr.status >= 400 || !lifecycleBusy()) { return; }
    e.detail.shouldSwap = false;
    var found = /data-status="([a-z_]+)"/.exec(e.detail.xhr.responseText);
    if (found && found[1] !== target.dataset.status) { stale(found[1]); }
  });

  /* While this page's own action is on its way, its answer brings the parts. */
  document.addEventListener("htmx:beforeRequest", function (e) {
    var section = byId("lifecycle");
    if (section && section.contains(e.detail.elt) && e.detail.requestConfig.verb === "post") {
      section.dataset.pending = "true";
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var section = byId("lifecycle");
    if (section && section.contains(e.detail.elt)) { delete section.dataset.pending; }
  });

  document.addEventListener("fw:device_status", function (e) {
    var status = e.detail.new_status || e.detail.status;
    var section = byId("lifecycle");
    if (!status || !section) { return; }
    byId("lifecycle-status").textContent = status.replace(/_/g, " ");
    if (section.dataset.status === status || section.dataset.pending) { return; }
    refresh("lifecycle");
    refresh("identity");
    refreshLog();
  });

  /* --- connectivity and latest values --------------------------------------------- */

  document.addEventListener("fw:presence", function (e) {
    var connectivity = byId("connectivity");
    if (connectivity && e.detail.connectivity) {
      connectivity.textContent = e.detail.connectivity;
      connectivity.dataset.state = e.detail.connectivity;
    }
    if (e.detail.last_seen) { setTime(byId("last-seen"), e.detail.last_seen); }
  });

  document.addEventListener("fw:telemetry", function (e) {
    var metrics = e.detail.metrics || {};
    var missing = false;
    Object.keys(metrics).forEach(function (name) {
      var point = metrics[name];
      var row = document.querySelector('#latest-values tr[data-metric="' + CSS.escape(name) + '"]');
      if (!row) { missing = true; return; }
      row.querySelector("[data-value]").textContent = number(point.value);
      setTime(row.querySelector("[data-at]"), point.timestamp);
      var fact = document.querySelector('[data-metric-value="' + CSS.escape(name) + '"]');
      if (fact) {
        if (fact.querySelector(".unit")) {
          fact.querySelector("[data-value]").textContent = number(point.value);
        } else { missing = true; }  // shown for the first time: with its unit
      }
    });
    if (e.detail.occurred_at) { setTime(byId("last-seen"), e.detail.occurred_at); }
    if (missing) { refresh("state", 200); }
  });

  document.addEventListener("fw:alert", function () { refresh("alerts", 200); });
  document.addEventListener("fw:firmware", function () { refresh("firmware-part", 200); });
  document.addEventListener("device-log-changed", refreshLog);

  document.addEventListener("fw:connected", function () {
    connections += 1;
    refresh("state");
    refresh("alerts");
    if (connections > 1) {  // back after a break: what changed meanwhile
      refresh("firmware-part");
      refresh("lifecycle");
      refresh("identity");
      refreshLog();
    }
  });

  /* --- the new token, paging -------------------------------------------------------- */

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-copy]") : null;
    if (!button) { return; }
    var input = byId(button.dataset.copy);
    var result = button.closest(".new-token").querySelector("[data-copy-result]");
    function selectIt() {
      input.focus();
      input.select();
      result.textContent = "Selected: press Ctrl+C (⌘C on a Mac) to copy it.";
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () {
        result.textContent = "Copied to the clipboard.";
      }, selectIt);
    } else {
      selectIt();
    }
  });

  document.addEventListener("htmx:afterSettle", function (e) {
    var target = e.detail.target;
    if (!target) { return; }
    var secret = byId("new-token-value");
    if (target.id === "tokens" && secret) {
      secret.focus();
      secret.select();
    }
    var trigger = e.detail.requestConfig ? e.detail.requestConfig.elt : null;
    if (target.id === "audit" && trigger && trigger.closest && trigger.closest(".pager")) {
      byId("h-audit").focus();
    }
    if (target.id === "lifecycle" && trigger && e.detail.requestConfig.verb === "post") {
      byId("h-lifecycle").focus();  // the form that had the focus is gone
    }
  });
}());
