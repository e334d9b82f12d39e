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

  /* What the person had ticked and where the focus was, taken just before a refresh's
     list is swapped in (not when it was asked for: a box ticked while the request was
     on its way stays ticked). */
  var kept = null;

  function keep() {
    var all = document.getElementById("select-all");
    var active = document.activeElement;
    kept = {
      ticked: Array.prototype.map.call(
        list.querySelectorAll('input[name="ids"]:checked'), function (el) { return el.value; }),
      all: Boolean(all && all.checked),
      focused: active && list.contains(active) ? active.id : ""
    };
  }

  /* Put back what was ticked; the focus goes back to the control it was on only when the
     swap lost it (someone who moved on while the refresh was on its way keeps theirs). */
  function restore() {
    kept.ticked.forEach(function (id) {
      var box = document.getElementById("sel-" + id);
      if (box) { box.checked = true; }
    });
    var all = document.getElementById("select-all");
    if (all) { all.checked = kept.all; }
    var back = kept.focused && document.getElementById(kept.focused);
    kept = null;
    if (back && lostFocus()) { back.focus(); }
    /* the control's row went (its alert acknowledged or cleared meanwhile): the caller
       puts the focus on the outcome (landOnOutcome) */
  }

  function lostFocus() { return !document.activeElement || document.activeElement === document.body; }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    window.htmx.ajax("GET", "/console/alerts/list" + (query ? "?" + query : ""),
                     /* from outside the form: a message next to its buttons stays */
                     {source: status, target: list, swap: "innerHTML"}).finally(function () {
      kept = null;
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

  /* A row's button is gone once its alert is acknowledged or cleared, and an answer's
     outcome replaces the outcome element: either way the focused element leaves the page
     and the focus falls to the body without a focusin. Where the focus last went
     (focusin: the list or the outcome) is kept, so after any swap — the answer's, its
     out-of-band outcome, or a live refresh that came first and removed the button that
     asked (htmx does not tell the page about an answer to a removed element) — the focus
     lands on the outcome instead of the top of the page. A refresh never takes the focus
     from elsewhere on the page. */
  var focusInArea = false;
  document.addEventListener("focusin", function (e) {
    focusInArea = list.contains(e.target) || e.target.id === "alerts-results";
  });
  function landOnOutcome() {
    var results = document.getElementById("alerts-results");
    if (focusInArea && lostFocus() && results) { results.focus(); }
  }
  document.body.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.target !== list) { return; }
    var config = e.detail.requestConfig;
    if (config && config.elt === status) { keep(); }
  });
  document.body.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target !== list) { return; }
    if (kept !== null) { restore(); }
    landOnOutcome();
  });
  document.body.addEventListener("htmx:oobAfterSwap", landOnOutcome);
  document.body.addEventListener("htmx:afterSettle", landOnOutcome);

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
