// chatsite: keys, scrolling, the composer, menus and dialogs, copying, folding.
// No inline script anywhere (CSP); model text never reaches this file as code.
(function () {
  "use strict";

  var BOTTOM_SLACK = 48; // px: "at the bottom" tolerates a little rounding and padding
  var FOLD_CODE_LINES = 20; // code blocks longer than this can be folded
  var pendingKey = null;

  function $(id) { return document.getElementById(id); }
  function closest(evt, selector) {
    var target = evt.target;
    return target && target.closest ? target.closest(selector) : null;
  }
  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function messages() { return $("messages"); }
  function composerInput() { return $("composer-input"); }
  function isStreaming() {
    var controls = $("composer-controls");
    return !!controls && controls.getAttribute("data-streaming") === "true";
  }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight <= BOTTOM_SLACK; }
  function say(text) {
    var feedback = $("composer-feedback");
    if (!feedback) return;
    feedback.textContent = text;
    feedback.classList.toggle("error", !!text);
  }

  // --- following new text only while the reader is at the bottom -------------------------
  var following = true;
  var wasStreaming = false;

  function scrollToBottom() {
    var el = messages();
    if (el) el.scrollTop = el.scrollHeight;
  }
  function updateJump() {
    var jump = $("jump-latest");
    if (jump) jump.hidden = following;
  }
  function watchScrolling() {
    var el = messages();
    if (!el || el.getAttribute("data-watched")) return;
    el.setAttribute("data-watched", "true");
    following = true;
    scrollToBottom();
    el.addEventListener("scroll", function () {
      following = atBottom(el);
      updateJump();
    }, { passive: true });
  }

  document.addEventListener("DOMContentLoaded", function () {
    watchScrolling();
    wasStreaming = isStreaming();
    enhance(document);
    growAll();
  });
  // The home page becomes a conversation in place (htmx swaps the whole shell).
  document.addEventListener("htmx:afterSettle", function (evt) {
    watchScrolling();
    enhance(evt.target || document);
    growAll();
    var input = composerInput() || $("new-message");
    if (input && evt.target && evt.target.id === "app") input.focus();
  });

  document.addEventListener("click", function (evt) {
    if (!closest(evt, "#jump-latest")) return;
    following = true;
    scrollToBottom();
    updateJump();
  });

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var el = messages();
    if (el) following = atBottom(el);
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    if (following) scrollToBottom();
    updateJump();
    enhanceLatest();
    var feedback = $("composer-feedback");
    var input = composerInput();
    if (feedback && input && pendingKey && feedback.getAttribute("data-accepted") === pendingKey) {
      // The server saved the message: only now is it safe to clear what was typed.
      input.value = "";
      grow(input);
      var chips = $("composer-chips"); // the files went with it
      if (chips) chips.innerHTML = "";
      var attachFeedback = $("attach-feedback");
      if (attachFeedback) { attachFeedback.textContent = ""; attachFeedback.classList.remove("error"); }
      pendingKey = null;
      input.focus();
    }
    var streaming = isStreaming();
    if (wasStreaming && !streaming && input) input.focus(); // the answer ended
    wasStreaming = streaming;
  });

  // --- attaching: the picker posts its files, then forgets them (the same file can be
  // picked again after its chip is removed).
  document.addEventListener("htmx:afterRequest", function (evt) {
    var el = evt.detail && evt.detail.elt;
    if (el && el.id === "attach-input") el.value = "";
  });
  // Refused before the view could answer (too large for the request limit, too many
  // uploads at once): say so under the composer, as text.
  document.addEventListener("htmx:responseError", function (evt) {
    var el = evt.detail && evt.detail.elt;
    var feedback = $("attach-feedback");
    if (!el || el.id !== "attach-input" || !feedback) return;
    var xhr = evt.detail.xhr;
    var text = xhr && xhr.responseText && xhr.responseText.length < 300 ? xhr.responseText : "";
    feedback.textContent = text.trim() || "The upload failed. Try again.";
    feedback.classList.add("error");
  });

  // --- sending -----------------------------------------------------------------------------
  document.addEventListener("htmx:wsConfigSend", function (evt) {
    var form = evt.target;
    if (form && form.classList && form.classList.contains("edit-form")) {
      // An edited message: a new version of that turn (the server refuses while streaming).
      evt.detail.parameters.client_key = newKey();
      following = true;
      return;
    }
    if (!form || form.id !== "composer-form") return;
    if (isStreaming()) { evt.preventDefault(); return; }
    pendingKey = newKey();
    evt.detail.parameters.client_key = pendingKey;
    following = true; // the reader just asked something: follow the answer
  });

  // --- frames for the whole user (sidebar markers, titles) may name elements this page
  // does not show: drop those fragments rather than have htmx report a missing target.
  htmx.defineExtension("prune-oob", {
    transformResponse: function (text) {
      if (text.indexOf("data-user-frame") === -1) return text;
      var template = document.createElement("template");
      template.innerHTML = text;
      Array.prototype.slice.call(template.content.children).forEach(function (el) {
        var oob = el.getAttribute("hx-swap-oob") || "true";
        var colon = oob.indexOf(":");
        var selector = colon === -1 ? "#" + el.id : oob.slice(colon + 1);
        if (!document.querySelector(selector)) el.remove();
      });
      return template.innerHTML;
    }
  });

  // --- the composer grows with what is typed ------------------------------------------------
  function grow(el) {
    if (!el || !el.hasAttribute("data-grows")) return;
    // CSSOM, not a style attribute: the CSP allows it.
    el.style.height = "auto";
    el.style.height = el.scrollHeight + "px";
  }
  function growAll() {
    Array.prototype.forEach.call(document.querySelectorAll("textarea[data-grows]"), grow);
  }
  document.addEventListener("input", function (evt) {
    if (evt.target && evt.target.matches && evt.target.matches("textarea[data-grows]")) grow(evt.target);
  });

  // --- starter suggestions on the empty chat ------------------------------------------------
  document.addEventListener("click", function (evt) {
    var suggestion = closest(evt, "[data-suggestion]");
    if (!suggestion) return;
    var input = $("new-message");
    if (!input) return;
    input.value = suggestion.getAttribute("data-suggestion");
    grow(input);
    input.focus();
    if (input.form) input.form.requestSubmit();
  });

  // --- menus: one open at a time; outside clicks, Esc and a chosen item close them ---------
  function closeMenus(except) {
    Array.prototype.forEach.call(document.querySelectorAll("details.menu[open]"), function (menu) {
      if (menu !== except && !menu.contains(except)) menu.open = false;
    });
  }
  document.addEventListener("toggle", function (evt) {
    var menu = evt.target;
    if (!menu.matches || !menu.matches("details.menu") || !menu.open) return;
    closeMenus(menu);
    var panel = menu.querySelector(".menu-panel");
    if (!panel) return;
    panel.classList.remove("opens-up");
    var rect = panel.getBoundingClientRect();
    if (rect.bottom > window.innerHeight - 8 && menu.getBoundingClientRect().top > rect.height) {
      panel.classList.add("opens-up");
    }
    var first = panel.querySelector("button, a, textarea");
    if (first && menu.classList.contains("rating-comment")) first.focus();
  }, true);
  document.addEventListener("click", function (evt) {
    var inside = closest(evt, "details.menu");
    if (!inside) { closeMenus(null); return; }
    var item = closest(evt, ".menu-item");
    if (item && !item.hasAttribute("data-copy")) {
      var menu = item.closest("details.menu");
      // Let the item's own action run first (htmx, a dialog), then fold the menu away.
      setTimeout(function () { if (menu) menu.open = false; }, 0);
    }
  });

  // --- dialogs -------------------------------------------------------------------------------
  function openDialog(id) {
    var dialog = $(id);
    if (!dialog || dialog.open) return null;
    closeMenus(null);
    dialog.showModal();
    var field = dialog.querySelector("input:not([type=hidden]), select, textarea");
    if (field) field.focus();
    return dialog;
  }
  document.addEventListener("click", function (evt) {
    var opener = closest(evt, "[data-dialog]");
    if (opener) { openDialog(opener.getAttribute("data-dialog")); return; }
    var close = closest(evt, '[data-action="close-dialog"]');
    if (close) { var dialog = close.closest("dialog"); if (dialog) dialog.close(); return; }
    var report = closest(evt, '[data-action="report"]');
    if (report) {
      var form = document.querySelector("[data-report-form]");
      if (!form) return;
      var id = report.getAttribute("data-message-id") || "";
      form.elements.message_id.value = id;
      var what = form.querySelector("[data-report-what]");
      if (what) what.textContent = id ? "answer" : "conversation";
      openDialog("report-dialog");
      return;
    }
    var share = closest(evt, '[data-action="share"]');
    if (share) {
      var shareForm = document.querySelector("[data-share-form]");
      if (!shareForm) return;
      // A fresh dialog each time: "share up to here" names its answer, a link is made anew.
      var upTo = share.getAttribute("data-message-id") || "";
      shareForm.elements.up_to.value = upTo;
      shareForm.elements.show_owner_name.checked = false;
      var shareWhat = shareForm.querySelector("[data-share-what]");
      if (shareWhat) shareWhat.textContent = upTo ? "up to this answer" : "this conversation";
      var shareResult = $("share-result");
      if (shareResult) shareResult.textContent = "";
      var submit = shareForm.querySelector("[data-share-submit]");
      if (submit) submit.hidden = false;
      openDialog("share-dialog");
      return;
    }
    var again = closest(evt, '[data-action="regenerate-with"]');
    if (again) {
      var dialog2 = $("regenerate-dialog");
      if (!dialog2) return;
      dialog2.querySelector("input[name=message_id]").value = again.getAttribute("data-message-id");
      openDialog("regenerate-dialog");
      return;
    }
    var rename = closest(evt, '[data-action="rename"]');
    if (rename) {
      var renameForm = document.querySelector("[data-rename-form]");
      if (!renameForm) return;
      renameForm.setAttribute("data-url", rename.getAttribute("data-url"));
      renameForm.elements.title.value = rename.getAttribute("data-title") || "";
      openDialog("rename-dialog");
      renameForm.elements.title.select();
    }
  });
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.matches && form.matches("[data-rename-form]")) {
      evt.preventDefault();
      // The answer carries the sidebar (out of band); the other tabs hear it over the socket.
      htmx.ajax("POST", form.getAttribute("data-url"), { source: form, swap: "none" }).then(function () {
        var dialog = form.closest("dialog");
        if (dialog) dialog.close();
      });
      return;
    }
    if (form.matches && form.matches("[data-closes-dialog]")) {
      var dialog = form.closest("dialog");
      // After htmx has taken the form's values (it listens to the same submit).
      setTimeout(function () { if (dialog) dialog.close(); }, 0);
    }
  });
  // A report says thank you, then the dialog closes and forgets what was typed.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.target;
    if (!form.matches || !form.matches("[data-report-form]") || !evt.detail.successful) return;
    setTimeout(function () {
      var dialog = form.closest("dialog");
      if (dialog) dialog.close();
      form.reset();
      var result = $("report-result");
      if (result) result.textContent = "";
      say("Thank you. The moderators will look at it.");
    }, 1200);
  });

  // A link was made: show it selected, ready to copy, and offer no second link by mistake.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (!evt.target || evt.target.id !== "share-result") return;
    var url = evt.target.querySelector("[data-share-url]");
    var form = evt.target.closest("form");
    var submit = form ? form.querySelector("[data-share-submit]") : null;
    if (url && submit) submit.hidden = true;
    if (url) { url.focus(); url.select(); }
  });
  document.addEventListener("click", function (evt) {
    var button = closest(evt, '[data-action="copy-share-link"]');
    if (!button) return;
    var box = button.closest(".share-link");
    var url = box ? box.querySelector("[data-share-url]") : null;
    if (!url) return;
    copyText(url.value, function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  // --- renaming a conversation inline: Enter saves (the form), Esc cancels ---------------
  document.addEventListener("click", function (evt) {
    if (!closest(evt, "#rename-button")) return;
    var form = $("rename-form");
    var input = $("rename-input");
    if (!form || !input) return;
    form.hidden = false;
    input.focus();
    input.select();
  });
  function cancelRename(input) {
    var form = $("rename-form");
    input.value = input.getAttribute("data-original") || "";
    if (form) {
      form.hidden = true;
      var error = form.querySelector(".error");
      if (error) error.remove();
    }
    var menu = $("conversation-menu");
    var summary = menu ? menu.querySelector("summary") : null;
    if (summary) summary.focus();
  }

  // --- editing a message in place: Esc or Cancel brings the original back ---------------
  function closeEdit(form) {
    var text = form.querySelector("textarea");
    if (text) text.value = text.defaultValue;
    form.hidden = true;
    var article = form.closest(".message");
    if (article) article.classList.remove("editing");
    var button = article && article.querySelector('[data-action="edit"]');
    if (button) button.focus();
  }
  document.addEventListener("click", function (evt) {
    var edit = closest(evt, '[data-action="edit"]');
    if (edit) {
      var form = $(edit.getAttribute("aria-controls"));
      if (!form) return;
      form.hidden = false;
      form.closest(".message").classList.add("editing");
      var text = form.querySelector("textarea");
      if (text) { text.focus(); text.setSelectionRange(text.value.length, text.value.length); }
      return;
    }
    var cancel = closest(evt, '[data-action="edit-cancel"]');
    if (cancel) closeEdit(cancel.closest("form"));
  });

  // --- copying: a code block, or a whole message as Markdown or as plain text --------------
  function copyText(text, done) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    done();
  }
  document.addEventListener("click", function (evt) {
    var button = closest(evt, ".copy-button");
    if (button) {
      var block = button.closest(".code-block");
      var code = block ? block.querySelector("code") : null;
      if (!code) return;
      copyText(code.textContent, function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
      return;
    }
    var item = closest(evt, "[data-copy]");
    if (!item) return;
    var article = item.closest(".message");
    if (!article) return;
    var text;
    if (item.getAttribute("data-copy") === "markdown") {
      var source = article.querySelector(".message-source");
      text = source ? source.value : "";
    } else {
      var shown = article.querySelector(".message-text");
      text = shown ? shown.innerText.trim() : "";
    }
    copyText(text, function () {
      var menu = item.closest("details.menu");
      if (menu) menu.open = false;
      say(item.getAttribute("data-copy") === "markdown" ? "Copied as Markdown." : "Copied as plain text.");
    });
  });

  // --- folding: each heading's section, and long code blocks, also while they stream ------
  // The state is kept per answer, by the heading's or block's place in it, so frames that
  // append to an answer (or replace its growing tail) keep what the reader folded.
  var folds = {};
  var foldIcon = '<svg class="icon" viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="M6 9l6 6 6-6"/></svg>';

  function foldState(article) {
    return folds[article.id] || (folds[article.id] = { sections: {}, code: {} });
  }
  function blocksOf(markdown) {
    var out = [];
    Array.prototype.forEach.call(markdown.children, function (part) {
      Array.prototype.forEach.call(part.children, function (el) { out.push(el); });
    });
    return out;
  }
  function foldButton(label) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "fold-toggle";
    button.setAttribute("aria-expanded", "true");
    button.setAttribute("aria-label", label);
    button.innerHTML = foldIcon; // our own constant markup, never model text
    return button;
  }
  function enhanceAnswer(markdown) {
    var article = markdown.closest(".message");
    if (!article || !article.id) return;
    var state = foldState(article);
    var index = 0;
    var foldingAt = null; // the level of the folded heading whose section we are in
    blocksOf(markdown).forEach(function (el) {
      var level = /^H([1-6])$/.exec(el.tagName);
      if (level) {
        var depth = +level[1];
        if (foldingAt !== null && depth <= foldingAt) foldingAt = null;
        var key = index++;
        var toggle = el.querySelector(":scope > .fold-toggle");
        if (!toggle) {
          toggle = foldButton("Fold this section");
          toggle.setAttribute("data-fold", "section");
          el.insertBefore(toggle, el.firstChild);
        }
        toggle.setAttribute("data-key", key);
        el.classList.toggle("folded", foldingAt !== null);
        var collapsed = !!state.sections[key];
        toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
        toggle.setAttribute("aria-label", (collapsed ? "Unfold" : "Fold") + " this section");
        if (collapsed && foldingAt === null) foldingAt = depth;
      } else {
        el.classList.toggle("folded", foldingAt !== null);
      }
    });
    Array.prototype.forEach.call(markdown.querySelectorAll(".code-block"), function (block, key) {
      var code = block.querySelector("code");
      var lines = code ? (code.textContent.match(/\n/g) || []).length + 1 : 0;
      var toggle = block.querySelector(".fold-toggle");
      if (lines <= FOLD_CODE_LINES) { if (toggle) toggle.remove(); return; }
      var head = block.querySelector(".code-head");
      if (!toggle && head) {
        toggle = foldButton("Fold this code");
        toggle.setAttribute("data-fold", "code");
        head.insertBefore(toggle, head.firstChild);
      }
      if (!toggle) return;
      toggle.setAttribute("data-key", key);
      var collapsed = !!state.code[key];
      block.classList.toggle("is-folded", collapsed);
      toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
      toggle.setAttribute("aria-label", (collapsed ? "Unfold" : "Fold") + " this code (" + lines + " lines)");
    });
  }
  function enhance(root) {
    var scope = root && root.querySelectorAll ? root : document;
    Array.prototype.forEach.call(scope.querySelectorAll(".message--assistant .markdown"), enhanceAnswer);
    if (scope.matches && scope.matches(".message--assistant .markdown")) enhanceAnswer(scope);
  }
  function enhanceLatest() {
    // Frames change the answer being written (and, at its end, replace it whole).
    var answers = document.querySelectorAll("#messages .message--assistant .markdown");
    if (answers.length) enhanceAnswer(answers[answers.length - 1]);
    Array.prototype.forEach.call(document.querySelectorAll('#messages .message--assistant[data-status="streaming"] .markdown'), enhanceAnswer);
  }
  document.addEventListener("click", function (evt) {
    var toggle = closest(evt, ".fold-toggle");
    if (!toggle) return;
    var article = toggle.closest(".message");
    var markdown = toggle.closest(".markdown");
    if (!article || !markdown) return;
    var state = foldState(article);
    var bucket = toggle.getAttribute("data-fold") === "code" ? state.code : state.sections;
    var key = toggle.getAttribute("data-key");
    bucket[key] = !bucket[key];
    enhanceAnswer(markdown);
    toggle.focus();
  });

  // --- the sidebar on narrow screens -------------------------------------------------------
  function setSidebar(open) {
    var sidebar = $("sidebar");
    var toggle = $("sidebar-toggle");
    if (!sidebar) return false;
    var wasOpen = sidebar.getAttribute("data-open") === "true";
    sidebar.setAttribute("data-open", open ? "true" : "false");
    if (toggle) toggle.setAttribute("aria-expanded", open ? "true" : "false");
    var backdrop = document.querySelector(".drawer-backdrop");
    if (backdrop) backdrop.hidden = !open;
    if (open) { var first = sidebar.querySelector("a, button, input"); if (first) first.focus(); }
    else if (wasOpen && toggle) toggle.focus();
    return wasOpen !== open;
  }
  document.addEventListener("click", function (evt) {
    if (closest(evt, "#sidebar-toggle")) {
      var sidebar = $("sidebar");
      setSidebar(!(sidebar && sidebar.getAttribute("data-open") === "true"));
      return;
    }
    if (closest(evt, '[data-action="close-sidebar"]')) setSidebar(false);
  });

  // A form htmx has not processed yet (swapped in within its settle delay, or the page
  // still loading) would submit natively. Forms with a real action get there on their own;
  // the others wait for htmx. (They are method="post" too, so that even before this script
  // runs, the typed text never lands in an address, the history or a server log.)
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!evt.defaultPrevented && form && form.matches && form.matches("[hx-post], [ws-send]") &&
        !form.hasAttribute("action")) {
      evt.preventDefault();
    }
  });

  // --- keys --------------------------------------------------------------------------------
  document.addEventListener("keydown", function (evt) {
    var target = evt.target;
    if (evt.key === "Enter" && !evt.shiftKey && !evt.isComposing &&
        target && target.matches && target.matches("textarea[data-enter-submits]")) {
      evt.preventDefault();
      if (target.id === "composer-input" && isStreaming()) {
        // Nothing is sent, and nothing typed is lost: say so rather than do nothing.
        say("An answer is still being written. Stop it (Esc) or wait for it to finish; your message is kept.");
        return;
      }
      if (target.form) target.form.requestSubmit();
      return;
    }
    if ((evt.ctrlKey || evt.metaKey) && evt.shiftKey && (evt.key === "O" || evt.key === "o")) {
      evt.preventDefault(); // Ctrl+Shift+O: a new conversation, from anywhere
      window.location.assign("/");
      return;
    }
    if (evt.key === "Escape") {
      if (target && target.id === "rename-input") { evt.preventDefault(); cancelRename(target); return; }
      if (target && target.form && target.form.classList.contains("edit-form")) {
        evt.preventDefault(); closeEdit(target.form); return;
      }
      var menu = document.querySelector("details.menu[open]");
      if (menu) {
        evt.preventDefault();
        menu.open = false;
        var summary = menu.querySelector("summary");
        if (summary) summary.focus();
        return;
      }
      if (document.querySelector("dialog[open]")) return; // the dialog closes itself
      if (setSidebar(false)) { evt.preventDefault(); return; } // first close the drawer
      var stop = $("stop-button");
      if (stop) { evt.preventDefault(); stop.click(); }
    }
  });
})();
