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
