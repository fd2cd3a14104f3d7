/* The job page, live: events of /ws/jobs/<id> (a snapshot, then every job event in order) move the
   progress bar, the status and the step timeline at once; events that change more than that
   (a status, a finished step, completion) reload the page's fragments through htmx. The socket
   reconnects with backoff and resumes after the last event id; while it is closed, or where
   websockets are unavailable, the #job-poll element polls the fragments every 3 s instead. */
(function () {
  "use strict";
  var page = document.getElementById("job-page");
  if (!page) return;
  var panelUrl = page.dataset.panelUrl;
  var TERMINAL = ["completed", "failed", "cancelled"];
  var REFRESHING = ["status", "step.finished", "step.retrying", "step.fallback", "error", "completed", "approved",
    "shot.edited", "shot.regenerating", "rights.released", "version.created", "comment.created", "comment.edited",
    "comment.resolved", "comment.reopened", "review.approved", "review.changes_requested"];
  var labels = readJson("job-status-labels");
  var stepLabels = readJson("job-step-status-labels");
  var socket = null, lastId = Number(page.dataset.lastEvent) || 0, attempts = 0, reconnectTimer = null, refreshTimer = null, refreshing = false,
    again = false, stopped = false;
  window.jobSocketLive = false;

  function readJson(id) {
    var node = document.getElementById(id);
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }

  function currentStatus() {
    var badge = document.getElementById("job-status");
    return badge ? badge.dataset.status : "";
  }

  function setProgress(fraction, message) {
    var percent = Math.max(0, Math.min(100, Math.round((Number(fraction) || 0) * 100)));
    var bar = document.getElementById("job-progress");
    if (bar) {
      bar.value = percent;
      bar.setAttribute("aria-valuenow", String(percent));
      bar.textContent = percent + "%";
    }
    var text = document.getElementById("job-progress-text");
    if (text) text.textContent = String(percent);
    if (typeof message === "string") {
      var line = document.getElementById("job-message");
      if (line && line.textContent !== message) line.textContent = message;
    }
  }

  function setStatus(status) {
    var badge = document.getElementById("job-status");
    if (!badge || !status) return;
    badge.dataset.status = status;
    badge.className = "badge " + status;
    badge.textContent = labels[status] || status;
  }

  function updateStep(event) {
    if (!event.step) return;
    var row = document.getElementById("step-" + event.step);
    if (!row) return;
    var badge = row.querySelector('[data-field="status"]');
    if (badge && event.status) {
      badge.className = "badge " + event.status;
      badge.textContent = stepLabels[event.status] || event.status;
    }
    var provider = row.querySelector('[data-field="provider"]');
    if (provider && event.provider) provider.textContent = event.provider;
    var cost = row.querySelector('[data-field="cost"]');
    if (cost && event.cost) cost.textContent = money(event.cost);
  }

  // Like generation.budgets.money: at least two decimals, at most four (12.50, 0.0042).
  function money(amount) {
    var text = Number(amount).toFixed(4).replace(/0+$/, "");
    var parts = text.split(".");
    return parts[0] + "." + (parts[1] || "").padEnd(2, "0");
  }

  // Reload the fragments, at most once a second; a request in flight is followed by one more.
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      refresh();
    }, 400);
  }

  function refresh() {
    if (!window.htmx) return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    htmx.ajax("GET", panelUrl, { target: "#job-page", swap: "none" }).then(function () {
      refreshing = false;
      if (again) { again = false; setTimeout(refresh, 1000); }
    }, function () { refreshing = false; });
  }

  function onEvent(event) {
    if (event.id) lastId = Math.max(lastId, event.id);
    if (event.type === "snapshot") {
      // After a reconnect the page may be behind: reload the fragments when the status moved on.
      var moved = event.status !== currentStatus();
      setStatus(event.status);
      setProgress(event.progress, event.message);
      if (moved) refreshSoon();
      return;
    }
    if (event.type === "progress") setProgress(event.progress, event.message);
    if (event.type === "status") setStatus(event.status);
    if (event.type === "error") setStatus("failed"); // a step failed for good: so did the job
    if (event.type === "completed") setProgress(1);
    updateStep(event);
    if (REFRESHING.indexOf(event.type) !== -1) refreshSoon();
  }

  function connect() {
    if (stopped) return;
    if (!("WebSocket" in window)) return; // #job-poll polls instead
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + window.location.host + page.dataset.wsPath + (lastId ? "?after=" + lastId : "");
    try {
      socket = new WebSocket(url);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket.onopen = function () {
      attempts = 0;
      window.jobSocketLive = true;
      page.dataset.live = "websocket";
    };
    socket.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      onEvent(event);
    };
    socket.onclose = function (closed) {
      window.jobSocketLive = false;
      page.dataset.live = "polling";
      socket = null;
      // 4401/4403/4404: signed out, no access, no such job: reconnecting cannot help.
      if (closed.code >= 4400 && closed.code < 4500) { stopped = true; return; }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (stopped || reconnectTimer) return;
    var delay = Math.min(30000, 1000 * Math.pow(2, attempts)) * (0.75 + Math.random() * 0.5);
    attempts += 1;
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  // #job-poll polls only while no socket is live (the CSP allows no eval, so not as an hx-trigger filter).
  document.body.addEventListener("htmx:beforeRequest", function (evt) {
    if (window.jobSocketLive && evt.detail.elt && evt.detail.elt.id === "job-poll") evt.preventDefault();
  });

  document.body.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target) return;
    // A refresh never throws away a shot form being edited: the storyboard waits for the next one.
    if (target.id === "storyboard" && target.querySelector("form.shot-form")) {
      evt.detail.shouldSwap = false;
    }
    // Nor restarts the player while the video is the same one (its URL carries the video's version).
    if (target.id === "job-output") {
      var playing = target.querySelector("#job-video");
      var arriving = evt.detail.fragment && evt.detail.fragment.querySelector
        ? evt.detail.fragment.querySelector("#job-video") : null;
      if (playing && arriving && playing.getAttribute("src") === arriving.getAttribute("src")) {
        evt.detail.shouldSwap = false;
      }
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !socket && !stopped) {
      attempts = 0;
      if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
      connect();
    }
  });

  connect();
})();
