/* The fleet overview, live: presence, lifecycle and alert events of the workspace make
   the page fetch its figures again (at most a few times a second; htmx queues the last
   fetch behind one in flight). Readings are not sent to this page — 10,000 chatty
   devices would flood it — so the figures are also fetched every 10 s, which moves the
   readings per minute and the last hour's offline devices on. */
(function () {
  "use strict";
  var pending = null;
  var REFRESH_MS = 10000;

  function changed() {
    if (pending !== null) { return; }
    pending = window.setTimeout(function () {
      pending = null;
      document.body.dispatchEvent(new Event("fleet-changed"));
    }, 250);
  }

  /* The figures are drawn again: a link that had the keyboard's focus gets it back (else
     the focus would fall to the top of the page at every refresh). */
  var figures = document.getElementById("figures");
  var kept = null;
  figures.addEventListener("htmx:beforeSwap", function () {
    var el = document.activeElement;
    var holder = el && figures.contains(el) ? el.closest("[id]") : null;
    kept = holder && el.getAttribute("href") ? {holder: holder.id, href: el.getAttribute("href")} : null;
  });
  figures.addEventListener("htmx:afterSwap", function () {
    if (!kept) { return; }
    var holder = document.getElementById(kept.holder);
    var again = holder && holder.querySelector('a[href="' + window.CSS.escape(kept.href) + '"]');
    if (again) { again.focus(); }
    kept = null;
  });

  window.Fieldwatch.live({
    status: document.getElementById("live"),
    devices: null,
    events: ["presence", "device_status", "alert"],
    connected: changed, /* what happened between the page's rendering and now */
    on: {presence: changed, device_status: changed, alert: changed}
  });
  window.setInterval(changed, REFRESH_MS);
}());
