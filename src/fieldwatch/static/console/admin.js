/* The administration page: copy a secret that is shown once to the clipboard. (Its
   forms are htmx forms; console.js shows their errors next to them.) */
(function () {
  "use strict";

  function say(button, text) {
    var out = button.parentNode.querySelector(".copied");
    if (out) { out.textContent = text; }
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function fallback(button, element) {
    selectText(element);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (err) { copied = false; }
    say(button, copied ? "Copied." : "Selected: press Ctrl+C (⌘C) to copy.");
  }

  /* A section drawn again after one of its forms: a secret shown once puts the focus on
     its copy button; else a focus gone with the old section goes to the section's heading. */
  document.body.addEventListener("htmx:afterSettle", function (e) {
    var id = e.detail.target && e.detail.target.id;
    var section = id ? document.getElementById(id) : null;
    if (!section || !section.classList.contains("admin-section")) { return; }
    var copy = section.querySelector("button[data-copy]");
    if (copy) { copy.focus(); return; }
    if (document.activeElement && document.activeElement !== document.body) { return; }
    var heading = section.querySelector("h2");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  });

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var element = document.getElementById(button.dataset.copy);
    if (!element) { return; }
    var text = element.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, "Copied."); },
        function () { fallback(button, element); }
      );
    } else {
      fallback(button, element);
    }
  });
}());
