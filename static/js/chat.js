// The chat page's few behaviours: keys, clearing the sent message, following the answer.
(function () {
  "use strict";

  function composer() { return document.getElementById("composer"); }
  function input() { return document.getElementById("message-input"); }
  function busy() {
    var send = document.getElementById("send-button");
    return !send || send.disabled;
  }

  var messages = null;
  var following = true;

  function nearBottom() {
    var root = document.scrollingElement;
    return root.scrollHeight - root.scrollTop - root.clientHeight < 80;
  }

  function follow() {
    if (following) { document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight; }
  }

  document.addEventListener("keydown", function (event) {
    if (event.target === input() && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!busy() && input().value.trim()) { composer().requestSubmit(); }
    } else if (event.key === "Escape") {
      var stop = document.getElementById("stop-button");
      if (stop) { stop.click(); }
    }
  });

  window.addEventListener("scroll", function () { following = nearBottom(); }, { passive: true });

  document.addEventListener("htmx:wsAfterMessage", function () {
    var sent = document.querySelector("[data-sent-now]");
    if (sent) {
      sent.removeAttribute("data-sent-now");
      input().value = "";
      following = true;
    }
    follow();
  });

  document.addEventListener("DOMContentLoaded", function () {
    messages = document.getElementById("messages");
    if (messages) { follow(); }
  });
})();
