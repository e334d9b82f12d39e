/* The inventory page: live connectivity and status of the devices on the visible page,
   select-all for the bulk form, and the table reloaded after a bulk action.

   The live connection listens only for the devices of the page shown; when htmx swaps
   another page of the table in, the subscription follows it. */
(function () {
  "use strict";
  var results = document.getElementById("inventory-results");

  function rows() { return results.querySelectorAll("tr[data-device-id]"); }
  function visible() {
    return Array.prototype.map.call(rows(), function (tr) { return tr.dataset.deviceId; });
  }
  function rowOf(id) {
    var found = null;
    rows().forEach(function (tr) { if (tr.dataset.deviceId === id) { found = tr; } });
    return found;
  }
  function cell(tr, name) { return tr.querySelector('[data-cell="' + name + '"]'); }

  function onPresence(m) {
    var tr = rowOf(m.device_id);
    if (!tr) { return; }
    var conn = cell(tr, "connectivity");
    if (conn && m.connectivity) {
      var span = document.createElement("span");
      span.className = "conn";
      span.dataset.connectivity = m.connectivity;
      span.textContent = m.connectivity;
      conn.replaceChildren(span);
    }
    var seen = cell(tr, "last-seen");
    if (seen && m.last_seen) {
      var time = document.createElement("time");
      time.setAttribute("datetime", m.last_seen);
      time.dataset.local = "";
      time.textContent = m.last_seen;
      seen.replaceChildren(time);
      window.Fieldwatch.localTimes(seen);
    }
  }

  function onStatus(m) {
    var tr = rowOf(m.device_id);
    if (!tr) { return; }
    var status = m.new_status || m.status;
    if (status) { cell(tr, "status").textContent = status.replace(/_/g, " "); }
    if (m.location !== undefined) { cell(tr, "location").textContent = m.location || "—"; }
  }

  function anySelected() { return results.querySelector('input[name="device"]:checked') !== null; }

  function reloadTable() {
    window.htmx.ajax("GET", window.location.pathname + window.location.search,
                     {target: "#inventory-results", swap: "innerHTML"});
  }

  var first = true;
  var live = window.Fieldwatch.live({
    status: document.getElementById("live"),
    devices: visible(),
    connected: function () {
      /* After a reconnection: what was missed while away (unless a selection is made). */
      if (!first && !anySelected()) { reloadTable(); }
      first = false;
    },
    on: {presence: onPresence, device_status: onStatus}
  });

  /* Select all on this page (the checkbox is shown only with JS). */
  function wireSelection() {
    var all = document.getElementById("select-all");
    if (!all) { return; }
    all.hidden = false;
    var boxes = results.querySelectorAll('input[name="device"]');
    function sync() {
      var checked = results.querySelectorAll('input[name="device"]:checked').length;
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      sync();
    });
    boxes.forEach(function (b) { b.addEventListener("change", sync); });
    sync();
  }
  wireSelection();

  document.body.addEventListener("htmx:afterSettle", function (e) {
    if (e.target === results) {
      wireSelection();
      live.subscribe(visible());
    }
  });
  /* After a bulk action (the answer's HX-Trigger): the table shows the new statuses. */
  document.body.addEventListener("inventory-changed", reloadTable);
}());
