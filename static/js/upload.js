// Asset upload with a progress bar: posts the form with XMLHttpRequest (upload.onprogress) and goes
// to the new asset's page. Without this script the form posts normally and the server redirects.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var status = document.getElementById("upload-status");
  var bar = document.getElementById("upload-progress");
  var text = document.getElementById("upload-progress-text");
  var error = document.getElementById("upload-error");
  var submit = document.getElementById("upload-submit");

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
    status.hidden = true;
    submit.disabled = false;
  }

  form.addEventListener("submit", function (event) {
    var input = form.querySelector('input[type="file"]');
    if (!input || !input.files.length) return; // let the server answer with the form's own error
    event.preventDefault();
    error.hidden = true;
    status.hidden = false;
    bar.value = 0;
    text.textContent = "";
    submit.disabled = true;

    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.round((e.loaded / e.total) * 100);
      bar.value = percent;
      bar.textContent = percent + "%";
      text.textContent = percent < 100 ? percent + "%" : form.dataset.protecting || "Protecting…";
    };
    request.onload = function () {
      var body = null;
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = null; }
      if (request.status >= 200 && request.status < 300 && body && body.url) {
        window.location.assign(body.url);
      } else if (body && body.error) {
        showError(body.error.message);
      } else if (request.status === 403) {
        showError(form.dataset.forbidden || "Not allowed.");
      } else {
        showError(form.dataset.failed || "The upload failed.");
      }
    };
    request.onerror = function () { showError(form.dataset.failed || "The upload failed."); };
    request.send(new FormData(form));
  });
})();
