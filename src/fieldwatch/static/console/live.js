/* One live connection per page: Socket.IO at /ws/monitoring with a short-lived token
   fetched on every (re)connection, the connection state shown in an element, and a
   subscription narrowed to what the page shows.

   Fieldwatch.live({
     status: element,             // gets "Live", "Reconnecting…", …
     devices: [ids] | null,       // null: the whole workspace
     events: [names] | null,      // only these events are sent (e.g. ["alert"]); null: all
     on: {event: handler, …},     // "telemetry", "presence", "device_status", "alert", …
     connected: function () {}    // after every (re)connection: fetch what was missed
   }) -> {subscribe: function (devices) {}, socket: socket}
*/
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.content : "";

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

  function live(options) {
    var status = options.status;
    var devices = options.devices === undefined ? null : options.devices;
    var events = options.events === undefined ? null : options.events;
    var socket = window.io({path: "/ws/monitoring", auth: credentials});

    function show(text, state) {
      if (!status) { return; }
      status.textContent = text;
      status.dataset.state = state;
    }
    function narrow() {
      if (devices !== null || events !== null) {
        socket.emit("subscribe", {devices: devices, events: events});
      }
    }
    show("Connecting for live updates…", "connecting");
    var connects = 0;
    socket.on("connect", function () {
      connects += 1;
      if (status) { status.dataset.connects = String(connects); }
      show("Live", "live");
      narrow();
      if (options.connected) { options.connected(); }
    });
    socket.on("disconnect", function (reason) {
      show("Reconnecting…", "reconnecting");
      /* The server ended the connection (a restart, or a credential check): the client
         does not retry by itself then. Connect again; the fresh token decides (a login
         that has ended goes to the login page). */
      if (reason === "io server disconnect") {
        window.setTimeout(function () { if (!socket.connected) { socket.connect(); } }, 1000);
      }
    });
    socket.on("connect_error", function () {
      show("Live updates unavailable; retrying…", "error");
      window.setTimeout(function () { if (!socket.connected) { socket.connect(); } }, 5000);
    });
    Object.keys(options.on || {}).forEach(function (name) { socket.on(name, options.on[name]); });
    return {
      socket: socket,
      subscribe: function (ids) {
        devices = ids;
        if (!socket.connected) { return; }
        if (ids === null && events === null) { socket.emit("unsubscribe"); } else { narrow(); }
      }
    };
  }

  window.Fieldwatch = window.Fieldwatch || {};
  window.Fieldwatch.live = live;
}());
