/* Every portal page: what inline handlers did before the Content-Security-Policy refused them.
   A <select data-autosubmit> (the organization and language switchers) submits its form on change;
   without scripts, the <noscript> button next to it does. */
(function () {
  "use strict";
  document.addEventListener("change", function (evt) {
    var field = evt.target;
    if (field && field.matches && field.matches("select[data-autosubmit]") && field.form) field.form.submit();
  });
})();
