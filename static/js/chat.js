// The chat page's few behaviours: keys, clearing the sent message, following the answer, the model menu, copying,
// attaching files, the dialog that asks before a chat is deleted.
(function () {
  "use strict";
  document.documentElement.classList.add("scripted");  // the page's CSS shows what needs the script only now

  function composer() { return document.getElementById("composer"); }
  function input() { return document.getElementById("message-input"); }
  function busy() {
    var send = document.getElementById("send-button");
    return !send || send.disabled;
  }

  function sendable() {  // text, or a file sent alone
    return input().value.trim() || composer().querySelector(".attachment");
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

  function send() {  // what Enter does in the box, and in the model picker beside it
    if (!busy() && sendable()) { composer().requestSubmit(document.getElementById("send-button")); }
  }

  function menu() { return document.getElementById("model-menu"); }
  function menuChoices() { return Array.prototype.slice.call(document.querySelectorAll("#model-list .model-choice")); }

  // The model menu from the keyboard: typing in its search filters the list (htmx asks the server), Enter picks
  // the first model listed, the arrows walk the list, Escape closes it.
  function menuKey(event) {
    var choices = menuChoices();
    var at = choices.indexOf(event.target);
    if (event.key === "Escape") {
      event.preventDefault();
      menu().open = false;
      menu().querySelector("summary").focus();
    } else if (event.target.id === "model-search" && event.key === "Enter") {
      event.preventDefault();
      if (choices.length) { choices[0].click(); }
    } else if (event.key === "ArrowDown" && choices.length) {
      event.preventDefault();
      choices[Math.min(at + 1, choices.length - 1)].focus();
    } else if (event.key === "ArrowUp" && at >= 0) {
      event.preventDefault();
      (at === 0 ? document.getElementById("model-search") : choices[at - 1]).focus();
    }
  }

  document.addEventListener("keydown", function (event) {
    if (document.querySelector("dialog[open]")) { return; }  // its own keys: Esc cancels it
    var enter = event.key === "Enter" && !event.shiftKey && !event.isComposing;
    if (enter && (event.target === input() || event.target.id === "model-input")) {
      event.preventDefault();
      send();
    } else if (menu() && menu().open && menu().contains(event.target)) {
      menuKey(event);
    } else if (event.key === "Escape") {
      var stop = document.getElementById("stop-button");
      if (stop) { stop.click(); } else { closePanel(); }
    } else if (event.key.toLowerCase() === "o" && event.ctrlKey && event.shiftKey) {
      var newChat = document.querySelector(".sidebar .new-chat");
      if (newChat) { event.preventDefault(); newChat.form.requestSubmit(); }
    } else if (event.key === "/" && !event.ctrlKey && !event.metaKey && !typing(event.target) && input()) {
      event.preventDefault();
      input().focus();
    }
  });

  document.addEventListener("toggle", function (event) {
    if (event.target === menu() && menu().open) { document.getElementById("model-search").focus(); }
  }, true);

  // Every place that names the model follows the header's, which the server sends anew when it is picked (in this
  // tab or another): the box's placeholder, and the picker unless someone is typing in it.
  var shownModel = null;
  function followModel() {
    var header = document.getElementById("chat-model");
    if (!header || header.dataset.model === shownModel) { return; }
    shownModel = header.dataset.model;
    var box = input();
    if (box && box.dataset.model !== shownModel) {
      box.placeholder = box.placeholder.replace(box.dataset.model, shownModel);
      box.dataset.model = shownModel;
    }
    var picker = document.getElementById("model-input");
    if (picker && document.activeElement !== picker) { picker.value = shownModel; }
  }

  function typing(target) { return target.closest && target.closest("input, textarea, select, [contenteditable]"); }

  // Esc closes the panel the focus is in, else the one opened last: Settings, a message's Edit, the account menu, the
  // chat list.
  function closePanel() {
    var focused = document.activeElement && document.activeElement.closest("details[open], .message form.edit");
    var open = document.querySelectorAll("details[open]:not(.reasoning), .message form.edit");
    var panel = focused || open[open.length - 1];
    var list = document.getElementById("sidebar-switch");
    if (panel && panel.matches("form")) {
      closeEdit(panel);
    } else if (panel) {
      panel.open = false;
      panel.querySelector("summary").focus();
    } else if (list && list.checked) {
      list.checked = false;
      list.focus();
    }
  }

  // A question's Edit (a link to a page with its form, without the script) puts the page's one edit form in place of
  // its text, filled with it; Edit again, Cancel or Esc puts the text back. One question is edited at a time.
  function openEdit(link) {
    var message = link.closest(".message");
    var form = document.getElementById("edit-form").content.firstElementChild.cloneNode(true);
    var id = message.id.replace(/^msg-/, "");
    document.querySelectorAll(".message form.edit").forEach(closeEdit);
    form.action = document.getElementById("chat").dataset.messages + id + "/edit";
    form.elements.message_id.value = id;
    form.elements.message.value = message.querySelector(".body").textContent;
    message.querySelector(".body").after(form);
    htmx.process(form);  // its ws-send, to the chat's socket
    link.setAttribute("aria-expanded", "true");
    form.elements.message.focus();
  }

  function closeEdit(form) {
    var link = form.closest(".message").querySelector("a.edit");
    form.remove();
    link.setAttribute("aria-expanded", "false");
    link.focus();
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest(".message a.edit");
    var cancel = event.target.closest(".message form.edit .cancel");
    var open = link && link.closest(".message").querySelector("form.edit");
    if (link || cancel) { event.preventDefault(); }
    if (open || cancel) {
      closeEdit(open || cancel.closest("form"));
    } else if (link) {
      openEdit(link);
    }
  });

  // A link with data-dialog opens that dialog rather than its page (Delete's question); the dialog's Cancel, a
  // link back to the chat without the script, closes it.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    var dialog = opener && document.getElementById(opener.dataset.dialog);
    var cancel = event.target.closest("dialog .cancel");
    if (dialog && dialog.showModal) {
      event.preventDefault();
      dialog.showModal();
      dialog.querySelector(".cancel").focus();  // the safe answer first
    } else if (cancel) {
      event.preventDefault();
      cancel.closest("dialog").close();
    }
  });

  // A click elsewhere closes the account menu and the phone's chat list, as Esc does (closePanel).
  document.addEventListener("click", function (event) {
    var account = document.getElementById("account-menu");
    var list = document.getElementById("sidebar-switch");
    if (account && account.open && !account.contains(event.target)) { account.open = false; }
    if (list && list.checked && !event.target.closest("#sidebar, #sidebar-switch, .sidebar-switch-label")) {
      list.checked = false;
    }
  });

  window.addEventListener("scroll", function () { following = nearBottom(); }, { passive: true });

  document.addEventListener("htmx:wsAfterMessage", function () {
    var sent = document.querySelector("[data-sent-now]");
    if (sent) {
      sent.removeAttribute("data-sent-now");
      input().value = "";
      var chosen = document.getElementById("attachments");
      if (chosen) { chosen.textContent = ""; }  // they went with the message
      following = true;
    }
    addCopyButtons(document);  // before following: the buttons make the answer taller
    reachableScrollers(document);
    follow();
    followModel();
    var heading = document.getElementById("conversation-title");
    var suffix = document.title.lastIndexOf(" · ");  // the tab's title follows the chat's (its first message, ...)
    if (heading && suffix >= 0) { document.title = heading.textContent + document.title.slice(suffix); }
  });

  // `text` gives the text, or (when it must be fetched) a promise of it. A promise goes in a ClipboardItem, so
  // that the copy still counts as the click's.
  function copy(text, fallback, button) {
    var say = function (words) {  // beside an icon (a span made when first needed), else as the button's words
      var state = button.querySelector(".copy-state");
      if (!state && button.querySelector(".icon")) {
        state = button.appendChild(document.createElement("span"));
        state.className = "copy-state";
      }
      (state || button).textContent = words;
    };
    var done = function () {
      say("Copied");
      setTimeout(function () { say(button.dataset.label || ""); }, 1500);
    };
    var failed = function () { say("Not copied: select the text and copy it"); };
    if (navigator.clipboard && window.isSecureContext) {
      var given = text();
      if (typeof given === "string") {
        navigator.clipboard.writeText(given).then(done, failed);
      } else if (window.ClipboardItem) {
        var blob = given.then(function (words) { return new Blob([words], { type: "text/plain" }); });
        navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]).then(done, failed);
      } else {
        given.then(function (words) { return navigator.clipboard.writeText(words); }).then(done, failed);
      }
    } else {  // plain http on a LAN address: the old way, with the text as shown
      var area = document.createElement("textarea");
      area.value = fallback();
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      done();
    }
  }

  function copyButton(label, text) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = label;
    button.dataset.label = label;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", function () { copy(text, text, button); });
    return button;
  }

  function shownText(body) {  // an answer's text as shown, without the buttons in it
    var copyOf = body.cloneNode(true);
    copyOf.querySelectorAll("button").forEach(function (button) { button.remove(); });
    return copyOf.innerText;
  }

  // The answer's markdown as the model wrote it, from the server (the page shows it rendered).
  function markdownOf(body) {
    var chat = document.getElementById("chat");
    var article = body.closest(".message");
    if (!chat || !chat.dataset.messages || !article) { return shownText(body); }  // a shared snapshot
    return fetch(chat.dataset.messages + article.id.replace(/^msg-/, "") + ".md", { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      });
  }

  // A copy button on each code block of a finished answer (the answer's own is among its actions).
  function addCopyButtons(root) {
    root.querySelectorAll(".message.assistant:not(.streaming) .body.markdown:not([data-copy])").forEach(function (body) {
      body.dataset.copy = "1";
      body.querySelectorAll("pre:not(.plain)").forEach(function (pre) {  // its language, and Copy (not a tool's)
        var head = document.createElement("div");
        var language = document.createElement("span");
        var named = /language-(\S+)/.exec((pre.querySelector("code") || pre).className);
        head.className = "code-head";
        language.textContent = named ? named[1] : "code";
        head.append(language, copyButton("Copy code", function () { return pre.innerText; }));
        pre.before(head);
      });
    });
  }

  // A code block, table or formula wider than its box scrolls: it takes the keyboard's focus, so the keys scroll
  // it too (browsers that do so by themselves need no script).
  function reachableScrollers(root) {
    root.querySelectorAll(".markdown pre, .markdown table, .markdown .math").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth && !box.hasAttribute("tabindex")) { box.tabIndex = 0; }
    });
  }

  // The server closes the socket of a tab left alone (code 4000) to make room for others: it connects again
  // at the next sign of the person (a key, a click, the tab shown again), before what they do is sent.
  var SIGNS = ["keydown", "pointerdown", "focusin", "visibilitychange"];
  document.addEventListener("htmx:wsClose", function (event) {
    if (event.detail.event.code !== 4000) { return; }
    var chat = event.target;
    var back = function () {
      if (document.visibilityState !== "visible") { return; }
      SIGNS.forEach(function (sign) { document.removeEventListener(sign, back, true); });
      chat.setAttribute("data-connected-at", String(Date.now()));  // a changed node: htmx connects it anew
      htmx.process(chat);
      var notice = document.getElementById("notice");
      if (notice) { notice.textContent = ""; }
    };
    SIGNS.forEach(function (sign) { document.addEventListener(sign, back, true); });
  });

  // A worker that holds all the chats it can closes a new socket with 4002 (the server's notice says so): the
  // tab tries again by itself, after 1-2 s, then twice as long each time up to a minute, and may land on another
  // worker. Connected again, the server clears the notice (the "again" in the socket's address asks it to).
  var attempts = 0;
  document.addEventListener("htmx:wsClose", function (event) {
    if (event.detail.event.code !== 4002) { attempts = 0; return; }
    var chat = event.target;
    var most = Math.min(1000 * Math.pow(2, attempts), 60000);
    attempts += 1;
    setTimeout(function () {
      chat.setAttribute("ws-connect", chat.getAttribute("ws-connect").split("?")[0] + "?again=1");
      htmx.process(chat);
    }, most / 2 + Math.random() * most / 2);
  });

  // Files chosen, dropped or pasted are uploaded at once (the socket carries text only). Each takes its place
  // at once as an "uploading" chip (with Cancel), so the files keep the order they were added in; then the chip
  // becomes the server's, whose ticked box names the file, which goes with the message.
  var UNREACHABLE = "The file could not be uploaded: the chat could not be reached. Check the connection, then " +
    "attach it again.";
  function uploadingChip(name, upload) {
    var chip = document.createElement("li");
    chip.className = "attachment uploading";
    var label = document.createElement("span");
    label.textContent = name + " (uploading…)";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "remove-attachment secondary";  // it takes the chip away, as Remove does
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", "Cancel " + name);
    cancel.addEventListener("click", function () { upload.abort(); });
    chip.append(label, " ", cancel);
    document.getElementById("attachments").appendChild(chip);
    return chip;
  }

  function upload(file) {
    var form = composer();
    var body = new FormData();
    body.append("file", file, file.name);
    var sending = new AbortController();
    var chip = uploadingChip(file.name, sending);
    var notice = document.getElementById("notice");
    fetch(form.dataset.uploadUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      signal: sending.signal,
      headers: { "X-CSRF-Token": form.querySelector("[name=csrf_token]").value }
    }).then(function (response) {
      return response.text().then(function (text) {
        if (!response.ok) { throw new Error(text || "That file could not be attached."); }
        chip.insertAdjacentHTML("afterend", text);
        chip.remove();
      });
    }).catch(function (error) {
      chip.remove();
      if (notice && error.name !== "AbortError") {  // nothing to say when cancelled
        notice.textContent = error instanceof TypeError ? UNREACHABLE : error.message;  // fetch's own: the network
      }
    });
  }

  // A message sent while a file is still uploading would go without it: wait for it.
  document.addEventListener("submit", function (event) {
    if (event.target === composer() && composer().querySelector(".attachment.uploading")) {
      event.preventDefault();
      event.stopImmediatePropagation();
      var notice = document.getElementById("notice");
      if (notice) { notice.textContent = "Wait for the files to finish uploading, then send."; }
    }
  }, true);

  function uploadAll(files) { Array.prototype.forEach.call(files || [], upload); }

  document.addEventListener("change", function (event) {
    if (event.target.id === "file-input") {
      uploadAll(event.target.files);
      event.target.value = "";  // uploaded: not sent again with the form
    }
  });

  // A message's Copy (among its actions) copies an answer's markdown or a question's text; a Copy beside a field
  // (a share link just made) what the field holds.
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".copy-message, [data-copies]");
    if (!button) { return; }
    var field = document.getElementById(button.dataset.copies || "");
    var body = button.closest(".message") && button.closest(".message").querySelector(".body");
    var shown = function () { return field ? field.value : shownText(body); };
    if (body && body.classList.contains("markdown")) {
      copy(function () { return markdownOf(body); }, shown, button);
    } else if (field || body) {
      copy(shown, shown, button);
    }
  });

  document.addEventListener("click", function (event) {
    var remove = event.target.closest(".remove-attachment");
    if (remove) { remove.closest(".attachment").remove(); }
  });

  document.addEventListener("dragover", function (event) {
    if (composer() && event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0) {
      event.preventDefault();
      composer().classList.add("dropping");
    }
  });
  document.addEventListener("dragleave", function () { if (composer()) { composer().classList.remove("dropping"); } });
  document.addEventListener("drop", function (event) {
    if (!composer() || !event.dataTransfer || !event.dataTransfer.files.length) { return; }
    event.preventDefault();
    composer().classList.remove("dropping");
    uploadAll(event.dataTransfer.files);
  });

  document.addEventListener("paste", function (event) {
    var files = event.clipboardData && event.clipboardData.files;
    if (event.target === input() && files && files.length) {
      event.preventDefault();
      uploadAll(files);
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    messages = document.getElementById("messages");
    if (messages) { follow(); addCopyButtons(document); reachableScrollers(document); }
    followModel();
    var made = document.getElementById("made-link");
    if (made) { made.select(); }  // a share link just made, ready to copy
  });
})();
