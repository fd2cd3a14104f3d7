// Verification: a drag-and-drop zone for the file input, and posting with a progress bar; the server
// answers the result fragment, which replaces #verify-result. Without this script the form posts normally.
(function () {
  "use strict";
  var form = document.getElementById("verify-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var zone = document.getElementById("verify-dropzone");
  var input = document.getElementById("verify-file");
  var status = document.getElementById("verify-status");
  var bar = document.getElementById("verify-progress");
  var result = document.getElementById("verify-result");
  var submit = document.getElementById("verify-submit");

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "dragend", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    if (!e.dataTransfer || !e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files; // the input shows the dropped file's name
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var hasFile = input.files && input.files.length > 0;
    if (!hasFile) data.delete("file");
    status.hidden = !hasFile;
    bar.value = 0;
    submit.disabled = true;
    result.setAttribute("aria-busy", "true");

    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    request.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    function done() {
      submit.disabled = false;
      status.hidden = true;
      result.removeAttribute("aria-busy");
    }
    request.onload = function () {
      done();
      if ((request.getResponseHeader("Content-Type") || "").indexOf("text/html") === 0 && request.status !== 403) {
        result.innerHTML = request.responseText;
        result.focus();
      } else {
        form.submit(); // an answer we can't show here: let the page show it
      }
    };
    request.onerror = function () { done(); form.submit(); };
    request.send(data);
  });
})();
