/* The device page's commands and configuration section (device_control.py), loaded into
   the page by htmx: this script comes with the fragment and listens on document, so it
   is set up once however often the fragment is swapped in.

   - fw:command (a command of the device changed, from the page's live connection) and
     "control:commands" (raised by the answer to the send form): the commands table is
     fetched again, at the page the user is on.
   - fw:config and "control:config" (the answer to the config form): the desired and
     reported configuration is fetched again; so is the edit form, unless the user has
     typed in it (or it holds a draft that was refused).
   - fw:connected (after every reconnection): both, for what happened in between.

   One fetch at a time per part: events that come while one is on the way make one
   more fetch after it, so the last one shown is never older than the last event. */
(function () {
  "use strict";
  var F = window.Fieldwatch = window.Fieldwatch || {};
  if (F.control) { return; }

  function refresher(id, url) {
    var busy = false, again = false, timer = null;
    function run() {
      timer = null;
      var el = document.getElementById(id);
      if (!el || !window.htmx) { return; }
      busy = true;
      window.htmx.ajax("GET", url(el), {source: el, target: el, swap: "outerHTML"})
        .catch(function () { /* shown by console.js */ })
        .then(function () {
          busy = false;
          var now = document.getElementById(id);
          if (again) { again = false; request(); } else if (now) { now.removeAttribute("aria-busy"); }
        });
    }
    function request() {
      var el = document.getElementById(id);
      if (el) { el.setAttribute("aria-busy", "true"); }  /* an update is on its way */
      if (busy) { again = true; return; }
      if (timer === null) { timer = window.setTimeout(run, 100); }
    }
    return request;
  }

  var commands = refresher("control-commands", function (el) {
    return el.dataset.url + "?offset=" + encodeURIComponent(el.dataset.offset || "0");
  });
  var config = refresher("control-config", function (el) { return el.dataset.url; });
  var form = refresher("control-config-form", function (el) { return el.dataset.url; });

  function configChanged() {
    config();
    var text = document.getElementById("control-desired");
    /* Not what the user is typing, nor a draft sent back with its error. */
    if (text && text.value === text.defaultValue && !text.hasAttribute("data-draft")) { form(); }
  }

  function ours(event) {
    var root = document.getElementById("control-root");
    if (!root) { return false; }
    var d = event.detail || {};
    return !d.device_id || d.device_id === root.dataset.deviceId;
  }

  /* Someone typing while the stored document was on its way: their text stays. */
  document.addEventListener("htmx:beforeSwap", function (e) {
    var config = e.detail.requestConfig;
    var text = document.getElementById("control-desired");
    if (!config || config.verb !== "get" || !e.detail.target || !text) { return; }
    if (e.detail.target.id === "control-config-form" && text.value !== text.defaultValue) {
      e.detail.shouldSwap = false;
    }
  });

  document.addEventListener("fw:command", function (e) { if (ours(e)) { commands(); } });
  document.addEventListener("fw:config", function (e) { if (ours(e)) { configChanged(); } });
  document.addEventListener("fw:connected", function () { commands(); config(); });
  document.addEventListener("control:commands", commands);
  document.addEventListener("control:config", config);

  var section = document.getElementById("control");
  if (section) { section.removeAttribute("aria-busy"); }
  /* Connected before this script came with the fragment: what changed in between. */
  var live = F.device && F.device.live;
  if (live && live.socket && live.socket.connected) { commands(); config(); }
  F.control = {commands: commands, config: configChanged};
}());
