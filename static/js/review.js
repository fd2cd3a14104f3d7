/* The review tools of the job page: the comment form takes its time from the player ("Use the player's
   time", and on pause) and a box drawn on the picture (normalized to 0..1, sent as the region); a comment's
   time jumps the player there and shows its box; two versions play side by side in sync. The review
   fragment is replaced live (htmx, job.js), so clicks are handled by delegation on the document. */
(function () {
  "use strict";
  var form = document.getElementById("comment-form");

  function player() { return document.getElementById("job-video"); }

  function field(name) { return form ? form.querySelector('[name="' + name + '"]') : null; }

  function setTime(seconds) {
    var input = field("time_s");
    if (input) input.value = (Math.round(seconds * 1000) / 1000).toString();
  }

  // --- the box drawn on the picture ---------------------------------------------------------------
  var overlay = null, box = null, start = null, drawing = false;

  function ensureOverlay() {
    var video = player();
    if (!video) return null;
    if (overlay && overlay.isConnected && overlay.parentNode === video.parentNode) return overlay;
    overlay = document.createElement("div");
    overlay.className = "region-overlay";
    overlay.id = "region-overlay";
    video.parentNode.insertBefore(overlay, video.nextSibling);
    place();
    return overlay;
  }

  function place() {
    var video = player();
    if (!overlay || !video) return;
    overlay.style.left = video.offsetLeft + "px";
    overlay.style.top = video.offsetTop + "px";
    overlay.style.width = video.offsetWidth + "px";
    overlay.style.height = (video.offsetHeight - 36) + "px"; // leave the player's controls usable
  }

  function showBox(region) {
    var layer = ensureOverlay();
    if (!layer) return;
    if (!box) { box = document.createElement("div"); box.className = "region-box"; box.id = "region-box"; }
    layer.appendChild(box);
    box.style.left = (region.x * 100) + "%";
    box.style.top = (region.y * 100) + "%";
    box.style.width = (region.w * 100) + "%";
    box.style.height = (region.h * 100) + "%";
    box.hidden = false;
  }

  function point(event) {
    var rect = overlay.getBoundingClientRect();
    return {x: Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
      y: Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height))};
  }

  function region(a, b) {
    var r = function (v) { return Math.round(v * 10000) / 10000; };
    return {type: "rect", x: r(Math.min(a.x, b.x)), y: r(Math.min(a.y, b.y)), w: r(Math.abs(a.x - b.x)),
      h: r(Math.abs(a.y - b.y))};
  }

  function setDrawing(on) {
    var layer = ensureOverlay(), toggle = document.getElementById("comment-draw");
    if (!layer) return;
    drawing = on;
    layer.classList.toggle("drawing", on);
    if (toggle) toggle.setAttribute("aria-pressed", on ? "true" : "false");
    if (on) { var video = player(); if (video && !video.paused) video.pause(); }
  }

  document.addEventListener("pointerdown", function (event) {
    if (!drawing || event.target !== overlay && event.target !== box) return;
    start = point(event);
    event.preventDefault();
  });
  document.addEventListener("pointermove", function (event) {
    if (!drawing || !start) return;
    showBox(region(start, point(event)));
  });
  document.addEventListener("pointerup", function (event) {
    if (!drawing || !start) return;
    var drawn = region(start, point(event));
    start = null;
    if (drawn.w < 0.01 || drawn.h < 0.01) return;
    showBox(drawn);
    var input = field("region"), text = document.getElementById("comment-region-text");
    if (input) input.value = JSON.stringify(drawn);
    if (text) text.textContent = Math.round(drawn.w * 100) + "% × " + Math.round(drawn.h * 100) + "%";
    var video = player();
    if (video && field("time_s") && !field("time_s").value) setTime(video.currentTime);
    setDrawing(false);
  });
  window.addEventListener("resize", place);

  // --- clicks -----------------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button") : null;
    if (!target) return;
    var video = player();
    if (target.id === "comment-use-time" && video) { setTime(video.currentTime); }
    else if (target.id === "comment-draw") { setDrawing(!drawing); }
    else if (target.classList.contains("comment-jump") && video) {
      video.pause();
      video.currentTime = Number(target.dataset.time) || 0;
      var item = target.closest(".comment");
      if (item && item.dataset.region) { try { showBox(JSON.parse(item.dataset.region)); } catch (e) { /* none */ } }
    } else if (target.id === "compare-open") { compare(); }
  });

  if (form) {
    var video = player();
    if (video) video.addEventListener("pause", function () { setTime(video.currentTime); });
  }

  // --- two versions side by side, in sync ---------------------------------------------------------------
  function compare() {
    var pane = document.getElementById("compare-pane");
    var left = document.getElementById("compare-left-video"), right = document.getElementById("compare-right-video");
    var pickLeft = document.getElementById("compare-left"), pickRight = document.getElementById("compare-right");
    if (!pane || !left || !right || !pickLeft || !pickRight) return;
    left.src = pickLeft.value;
    right.src = pickRight.value;
    pane.hidden = false;
    if (!left.dataset.synced) {
      left.dataset.synced = "1";
      left.addEventListener("play", function () { right.currentTime = left.currentTime; right.play(); });
      left.addEventListener("pause", function () { right.pause(); right.currentTime = left.currentTime; });
      left.addEventListener("seeked", function () { right.currentTime = left.currentTime; });
      left.addEventListener("timeupdate", function () {
        if (Math.abs(right.currentTime - left.currentTime) > 0.15) right.currentTime = left.currentTime;
      });
    }
    pane.scrollIntoView({block: "nearest"});
  }
})();
