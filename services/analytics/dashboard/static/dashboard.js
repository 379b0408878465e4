// The Platform Dashboard: panels are server-rendered HTML; this script only fetches them with
// the caller's token and swaps them in when the gateway's event stream says something changed.
(function () {
  "use strict";
  var KEY = "xynergy.token";
  var POLL_MS = 30000;
  var main = document.getElementById("panels");
  var live = document.getElementById("live");
  var form = document.getElementById("signin");
  var base = location.pathname.replace(/\/+$/, "");
  var timer = null;
  var socket = null;

  // The token arrives as a frontend would hand it over: once in the URL fragment (never sent
  // to a server, removed from the address bar at once), then kept in this tab's sessionStorage.
  function token() {
    var m = location.hash.match(/(?:^#|&)token=([^&]+)/);
    if (m) {
      sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  function signIn(why) {
    form.hidden = false;
    document.getElementById("signin-why").textContent = why || "";
  }

  async function refresh() {
    var t = token();
    if (!t) return signIn("no token");
    var r = await fetch(base + "/panels", {
      headers: { Authorization: "Bearer " + t },
      cache: "no-store",
    });
    if (r.status === 401) return signIn("the token was refused");
    if (!r.ok) {
      document.getElementById("updated").textContent = "panels: HTTP " + r.status;
      return;
    }
    main.innerHTML = await r.text();
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150); // one re-read for a burst of changes
  }

  function connect() {
    if (!token() || typeof io === "undefined") return;
    socket = io({
      path: document.body.dataset.streamPath,
      transports: ["websocket"],
      auth: function (cb) { cb({ token: token() }); },
    });
    socket.on("connect", function () {
      socket.emit("subscribe", ["platform-status", "anomaly-alerts"], function (ack) {
        live.className = "live on";
        live.textContent = "stream: live";
        document.body.dataset.subscribed = (ack && ack.subscribed || []).join(",");
        refresh();
      });
    });
    socket.on("disconnect", function () {
      live.className = "live off";
      live.textContent = "stream: reconnecting";
    });
    socket.on("connect_error", function (err) {
      live.className = "live off";
      live.textContent = "stream: " + (err && err.message);
    });
    socket.on("platform-status", soon);
    socket.on("anomaly-alerts", soon);
    socket.on("resync", soon);
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
    form.hidden = true;
    if (socket) socket.disconnect();
    connect();
    refresh();
  });

  refresh();
  connect();
  setInterval(refresh, POLL_MS);
})();
