/* A webhook's page: the "Copy" button next to a secret shown once. */
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("[data-copy]") : null;
    if (!button) { return; }
    var field = document.getElementById(button.dataset.copy);
    field.select();
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; },
                                                      function () { button.textContent = "Select and copy"; });
    } else { button.textContent = "Select and copy"; }
  });
}());
