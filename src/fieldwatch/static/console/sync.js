/* The sync history, live: it listens to sync events only (a run created, or one that
   changed status) and fetches the runs table again with the page's filters, at most
   every 300 ms; the keyboard focus stays on the button that had it (the buttons have
   ids). While the live connection is down and runs are open, the table is fetched
   every 5 s instead. */
(function () {
  "use strict";
  var status = document.getElementById("live");
  var pending = null;
  var busy = false;
  var again = false;
  var live = null;

  function focusedId() {
    var el = document.activeElement;
    return el && el !== document.body && el.id ? el.id : "";
  }

  function refresh() {
    var target = document.getElementById("sync-runs");
    if (!target) { return; }
    if (busy) { again = true; return; }
    busy = true;
    var focused = focusedId();
    var query = target.dataset.query;
    window.htmx.ajax("GET", "/console/integrations/sync/runs" + (query ? "?" + query : ""),
                     {source: status, target: target, swap: "outerHTML"})
      .then(function () {
        var el = focused ? document.getElementById(focused) : null;
        if (el && document.activeElement !== el) { el.focus(); }
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function soon() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () { pending = null; refresh(); }, 300);
  }

  window.setInterval(function () {
    var target = document.getElementById("sync-runs");
    var connected = live && live.socket.connected;
    if (!connected && target && target.dataset.open === "true") { refresh(); }
  }, 5000);

  live = window.Fieldwatch.live({
    status: status,
    events: ["sync"],
    on: {sync: soon},
    connected: soon /* what happened between the page's rendering and now */
  });
}());
