/* A rollout's page, live: it listens to firmware events only, and when one concerns
   this rollout (an update of one of its devices, a change of its status or of a wave)
   it fetches the live part (status, actions, figures, waves) and the shown page of the
   devices again, at most every 300 ms. The keyboard focus stays on the button that had
   it (the buttons have ids). After an action (start, pause, resume, abort: the live
   part comes back) the devices are fetched again too. */
(function () {
  "use strict";
  var root = document.getElementById("rollout");
  var rolloutId = root.dataset.rolloutId;
  var base = "/console/firmware/rollouts/" + rolloutId;
  var status = document.getElementById("live");
  var pending = null;
  var busy = false;
  var again = false;

  function focusedId() {
    var el = document.activeElement;
    return el && el !== document.body && el.id ? el.id : "";
  }

  function swap(path, id) {
    var target = document.getElementById(id);
    if (!target) { return Promise.resolve(); }
    /* from outside the forms: a message next to the buttons stays */
    return window.htmx.ajax("GET", path, {source: status, target: target, swap: "outerHTML"});
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var focused = focusedId();
    var devices = document.getElementById("rollout-devices");
    var query = devices ? devices.dataset.query : "";
    Promise.all([
      swap(base + "/live", "rollout-live"),
      swap(base + "/devices" + (query ? "?" + query : ""), "rollout-devices")
    ]).then(function () {
      var el = focused ? document.getElementById(focused) : null;
      if (el && document.activeElement !== el) { el.focus(); }
    }).finally(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  function soon() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () { pending = null; refresh(); }, 300);
  }

  function onFirmware(message) {
    if (message.rollout_id === rolloutId) { soon(); }
  }

  /* An action answered with the live part: its devices have changed too. The button
     pressed may be gone (Pause becomes Resume): the focus goes to the new one once htmx
     has settled the new part (its forms are wired then: a key pressed on a button
     focused earlier would post the plain form and reload the page). */
  document.body.addEventListener("htmx:afterSettle", function (e) {
    var verb = e.detail.requestConfig ? e.detail.requestConfig.verb : "get";
    if (verb === "get" || e.detail.xhr.status >= 400) { return; }
    var lost = !document.activeElement || document.activeElement === document.body;
    var next = document.querySelector("#rollout-live .actions button");
    if (lost && next) { next.focus(); }
    soon();
  });

  window.Fieldwatch.live({
    status: status,
    events: ["firmware"],
    on: {firmware: onFirmware},
    connected: soon /* what happened between the page's rendering and now */
  });
}());
