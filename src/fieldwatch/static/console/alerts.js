/* The alerts page, live: it listens to alert events only (of the filtered device, or of
   the workspace) and fetches its list again when a new alert is raised or a shown one
   changes, keeping the ticked boxes and the focus (every control in a row has an id, so a
   row's button keeps the focus across a refresh). "Select all" ticks the shown rows. */
(function () {
  "use strict";
  var form = document.getElementById("alerts-form");
  var list = document.getElementById("alerts-list");
  var device = form.dataset.device;
  var query = form.dataset.query;
  var status = document.getElementById("live");
  var pending = null;
  var busy = false;
  var again = false;

  function shown(id) { return id && document.getElementById("alert-" + id) !== null; }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var ticked = Array.prototype.map.call(
      list.querySelectorAll('input[name="ids"]:checked'), function (el) { return el.value; });
    var focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.id : "";
    var all = document.getElementById("select-all");
    var allTicked = Boolean(all && all.checked);
    window.htmx.ajax("GET", "/console/alerts/list" + (query ? "?" + query : ""),
                     /* from outside the form: a message next to its buttons stays */
                     {source: status, target: list, swap: "innerHTML"}).then(function () {
      ticked.forEach(function (id) {
        var box = document.getElementById("sel-" + id);
        if (box) { box.checked = true; }
      });
      var allAgain = document.getElementById("select-all");
      if (allAgain) { allAgain.checked = allTicked; }
      if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
    }).finally(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  function soon() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () { pending = null; refresh(); }, 250);
  }

  function onAlert(message) {
    if (message.type === "alert.raised" || shown(message.alert_id)) { soon(); }
  }

  /* A row's button is gone once its alert is acknowledged or cleared: the focus goes to
     the outcome rather than to the top of the page. Only when the focus was in the list
     before the swap: a refresh never takes the focus from elsewhere on the page. */
  var focusWasInList = false;
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.target === list) { focusWasInList = list.contains(document.activeElement); }
  });
  document.body.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target !== list) { return; }
    var lost = focusWasInList &&
      (!document.activeElement || document.activeElement === document.body);
    focusWasInList = false;
    var results = document.getElementById("alerts-results");
    if (lost && results) { results.focus(); }
  });

  form.addEventListener("change", function (e) {
    if (e.target.id !== "select-all") { return; }
    list.querySelectorAll('input[name="ids"]').forEach(function (box) { box.checked = e.target.checked; });
  });

  window.Fieldwatch.live({
    status: status,
    devices: device ? [device] : null,
    events: ["alert"],
    on: {alert: onAlert},
    connected: soon /* what happened between the page's rendering and now */
  });
}());
