/* The fleet overview, live: events of the workspace make the page fetch its figures
   again (at most a few times a second; htmx queues the last fetch behind one in
   flight). Once a minute too, so that the minute's readings and the last hour's
   offline devices move on when nothing happens. */
(function () {
  "use strict";
  var pending = null;
  var EVERY_MINUTE = 60000;

  function changed() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      document.body.dispatchEvent(new Event("fleet-changed"));
    }, 250);
  }

  /* Only what the page shows: devices' presence and lifecycle, alerts, readings. */
  window.Fieldwatch.live({
    status: document.getElementById("live"),
    devices: null,
    connected: changed, /* what happened between the page's rendering and now */
    on: {presence: changed, device_status: changed, alert: changed, telemetry: changed}
  });
  window.setInterval(changed, EVERY_MINUTE);
}());
