// The live page: one EventSource on /live per open page. Stock events update every [data-live-stock] element;
// every event is also dispatched on document.body as `sb:<name>` (htmx refreshes cards with
// hx-trigger="sb:posting from:body"); alerts show as toasts. Reconnects on its own (EventSource retry).
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-live");
  if (!url || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var source = null;

  function setState(on) {
    if (!state) return;
    state.classList.toggle("on", on);
    state.textContent = on ? state.getAttribute("data-on") : body.getAttribute("data-msg-live-off");
  }

  function updateStock(data) {
    var nodes = document.querySelectorAll('[data-live-stock="' + CSS.escape(data.sku) + '"]');
    nodes.forEach(function (node) {
      var location = node.getAttribute("data-live-location");
      var value = location ? (data.on_hand[location] || 0) : data.total;
      node.textContent = Number(value).toLocaleString();
      node.classList.remove("flash-live");
      void node.offsetWidth;
      node.classList.add("flash-live");
    });
  }

  function toast(data) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var lang = body.getAttribute("data-lang");
    var text = (lang === "en" ? data.message_en : data.message) || data.message || data.message_en || data.kind;
    var node = document.createElement("div");
    node.className = "toast alert-" + data.kind;
    node.setAttribute("role", "alert");
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn";
    close.textContent = body.getAttribute("data-msg-dismiss");
    close.addEventListener("click", function () { node.remove(); });
    var title = document.createElement("strong");
    var kinds = {};
    try { kinds = JSON.parse(body.getAttribute("data-alert-kinds") || "{}"); } catch (e) { kinds = {}; }
    title.textContent = body.getAttribute("data-msg-alert") + " · " + (kinds[data.kind] || data.kind);
    var message = document.createElement("span");
    message.textContent = text;
    node.appendChild(close);
    node.appendChild(title);
    node.appendChild(message);
    box.appendChild(node);
    while (box.children.length > 5) box.firstChild.remove();
  }

  function on(name, handler) {
    source.addEventListener(name, function (event) {
      var data = {};
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (handler) handler(data);
      body.dispatchEvent(new CustomEvent("sb:" + name, { detail: data }));
    });
  }

  function connect() {
    source = new EventSource(url);
    source.addEventListener("open", function () { setState(true); });
    source.addEventListener("error", function () { setState(false); });
    on("hello", function () { setState(true); });
    on("stock", updateStock);
    on("posting");
    on("alert", toast);
    on("device");
    on("resync");
    on("ended", function () { source.close(); setState(false); window.location.reload(); });
  }

  window.addEventListener("pagehide", function () { if (source) source.close(); });
  connect();
})();
