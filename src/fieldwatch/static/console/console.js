/* What every console page does: times in the browser's time zone (UTC on hover), and
   errors of htmx requests shown next to what caused them.

   Conventions for pages:
   - <time datetime="ISO-8601" data-local>…</time> is rewritten to the local time, with
     the UTC value in its title. ``data-local="date"`` shows the date only,
     ``data-local="time"`` the time of day only.
   - An htmx request that fails (4xx/5xx) swaps the console's problem fragment into the
     nearest ``[data-errors]`` element of the control (inside its form or the closest
     ``[data-error-scope]`` container), else into #page-error at the top of the page.
   - A network failure says so in the same place. */
(function () {
  "use strict";
  var fmt = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "medium"});
  var dateOnly = new Intl.DateTimeFormat(undefined, {dateStyle: "medium"});
  var timeOnly = new Intl.DateTimeFormat(undefined, {timeStyle: "medium"});

  function localTimes(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      var style = el.dataset.local;
      el.textContent = (style === "date" ? dateOnly : style === "time" ? timeOnly : fmt).format(when);
      el.title = when.toISOString().replace(".000Z", "Z") + " UTC";
    });
  }
  window.Fieldwatch = window.Fieldwatch || {};
  window.Fieldwatch.localTimes = localTimes;

  function errorRegion(elt) {
    var scope = elt && elt.closest ? (elt.closest("[data-error-scope]") || elt.closest("form")) : null;
    var region = scope ? scope.querySelector("[data-errors]") : null;
    return region || document.getElementById("page-error");
  }

  function say(region, text) {
    region.textContent = "";
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = text;
    region.appendChild(p);
  }

  /* A plain form with data-confirm asks first (htmx forms use hx-confirm). */
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  }, true);
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSettle", function (e) { localTimes(e.target); });
  /* A new action clears the message of the last one; a background refresh (a GET) does
     not, so a message stays until the user acts again. */
  document.addEventListener("htmx:beforeRequest", function (e) {
    var verb = e.detail.requestConfig ? e.detail.requestConfig.verb : "get";
    if (verb === "get") { return; }
    var region = errorRegion(e.detail.elt);
    if (region && region.id !== "page-error") { region.textContent = ""; }
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr;
    if (xhr.status < 400) { return; }
    var region = errorRegion(e.detail.requestConfig ? e.detail.requestConfig.elt : e.detail.elt);
    var type = xhr.getResponseHeader("content-type") || "";
    if (type.indexOf("text/html") === 0) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
      e.detail.target = region;
      e.detail.swapOverride = "innerHTML";
      return;
    }
    var text = "The request failed (HTTP " + xhr.status + ").";
    try { text = JSON.parse(xhr.responseText).detail || text; } catch (err) { /* not JSON */ }
    say(region, text);
  });
  document.addEventListener("htmx:sendError", function (e) {
    say(errorRegion(e.detail.elt), "The server cannot be reached; check the connection and try again.");
  });
}());
