/* The fleet overview, live: events of the workspace over Socket.IO make the page fetch
   its figures again (at most a few times a second). */
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var live = document.getElementById("live");
  var pending = null;

  function changed() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      document.body.dispatchEvent(new Event("fleet-changed"));
    }, 250);
  }

  /* A fresh short-lived token on every (re)connection; a login that ended goes back to
     the console, which sends the user to the login page with the reason. */
  function credentials(callback) {
    fetch("/console/realtime-token", {headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"})
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/console/"); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (d) { callback({token: d.token, workspace: d.workspace}); })
      .catch(function () { callback({}); });
  }

  var socket = window.io({path: "/ws/monitoring", auth: credentials});
  socket.on("connect", function () {
    live.textContent = "Live";
    changed(); /* what happened between the page's rendering and now */
  });
  socket.on("disconnect", function () { live.textContent = "Reconnecting…"; });
  socket.on("connect_error", function () {
    live.textContent = "Live updates unavailable; retrying…";
    window.setTimeout(function () { if (!socket.connected) { socket.connect(); } }, 5000);
  });
  /* Only what the page shows: devices' presence and lifecycle, alerts, readings. */
  ["presence", "device_status", "alert", "telemetry"].forEach(function (name) {
    socket.on(name, changed);
  });
}());
