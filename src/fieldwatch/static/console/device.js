/* The device page's one live connection: it listens to the open device only and passes
   every event on to the page's sections as a DOM event on document, named "fw:<event>"
   (fw:telemetry, fw:presence, fw:device_status, fw:alert, fw:command, fw:config) with the
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
  ["telemetry", "presence", "device_status", "alert", "command", "config"].forEach(function (n) {
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
