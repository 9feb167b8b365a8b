// chatsite: keys, scrolling and the composer. No inline script anywhere (CSP).
(function () {
  "use strict";

  var BOTTOM_SLACK = 48; // px: "at the bottom" tolerates a little rounding and padding
  var pendingKey = null;

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function messages() { return document.getElementById("messages"); }
  function composerInput() { return document.getElementById("composer-input"); }
  function isStreaming() {
    var controls = document.getElementById("composer-controls");
    return !!controls && controls.getAttribute("data-streaming") === "true";
  }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight <= BOTTOM_SLACK; }

  // --- following new text only while the reader is at the bottom -------------------------
  var following = true;
  var wasStreaming = false;

  function scrollToBottom() {
    var el = messages();
    if (el) el.scrollTop = el.scrollHeight;
  }
  function updateJump() {
    var jump = document.getElementById("jump-latest");
    if (jump) jump.hidden = following;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var el = messages();
    if (el) {
      scrollToBottom();
      el.addEventListener("scroll", function () {
        following = atBottom(el);
        updateJump();
      }, { passive: true });
    }
    var jump = document.getElementById("jump-latest");
    if (jump) {
      jump.addEventListener("click", function () {
        following = true;
        scrollToBottom();
        updateJump();
      });
    }
    wasStreaming = isStreaming();
  });

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var el = messages();
    if (el) following = atBottom(el);
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    if (following) scrollToBottom();
    updateJump();
    var feedback = document.getElementById("composer-feedback");
    var input = composerInput();
    if (feedback && input && pendingKey && feedback.getAttribute("data-accepted") === pendingKey) {
      // The server saved the message: only now is it safe to clear what was typed.
      input.value = "";
      pendingKey = null;
      input.focus();
    }
    var streaming = isStreaming();
    if (wasStreaming && !streaming && input) input.focus(); // the answer ended
    wasStreaming = streaming;
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
      if (text.indexOf('data-user-frame') === -1) return text;
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

  // --- renaming a conversation inline: Enter saves (the form), Esc cancels ---------------
  document.addEventListener("click", function (evt) {
    var button = evt.target && evt.target.closest ? evt.target.closest("#rename-button") : null;
    if (!button) return;
    var form = document.getElementById("rename-form");
    var input = document.getElementById("rename-input");
    if (!form || !input) return;
    form.hidden = false;
    input.focus();
    input.select();
  });
  function cancelRename(input) {
    var form = document.getElementById("rename-form");
    input.value = input.getAttribute("data-original") || "";
    if (form) {
      form.hidden = true;
      var error = form.querySelector(".error");
      if (error) error.remove();
    }
    var button = document.getElementById("rename-button");
    if (button) button.focus();
  }

  // --- editing a message: the form opens in place, Esc or Cancel closes it ---------------
  function closeEdit(form) {
    var text = form.querySelector("textarea");
    if (text) text.value = text.defaultValue;
    form.hidden = true;
    var button = form.parentNode && form.parentNode.querySelector('[data-action="edit"]');
    if (button) button.focus();
  }
  document.addEventListener("click", function (evt) {
    var target = evt.target && evt.target.closest ? evt.target : null;
    if (!target) return;
    var edit = target.closest('[data-action="edit"]');
    if (edit) {
      var form = document.getElementById(edit.getAttribute("aria-controls"));
      if (!form) return;
      form.hidden = false;
      var text = form.querySelector("textarea");
      if (text) { text.focus(); text.setSelectionRange(text.value.length, text.value.length); }
      return;
    }
    var cancel = target.closest('[data-action="edit-cancel"]');
    if (cancel) closeEdit(cancel.closest("form"));
  });

  // --- copy buttons on code blocks (model text carries no script; this is ours) -----------
  document.addEventListener("click", function (evt) {
    var button = evt.target && evt.target.closest ? evt.target.closest(".copy-button") : null;
    if (!button) return;
    var block = button.closest(".code-block");
    var code = block ? block.querySelector("code") : null;
    if (!code) return;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(code.textContent).then(done, function () {});
    } else {
      var range = document.createRange();
      range.selectNodeContents(code);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      done();
    }
  });

  // --- the sidebar on narrow screens -------------------------------------------------------
  function setSidebar(open) {
    var sidebar = document.getElementById("sidebar");
    var toggle = document.getElementById("sidebar-toggle");
    if (!sidebar || !toggle) return false;
    var wasOpen = sidebar.getAttribute("data-open") === "true";
    sidebar.setAttribute("data-open", open ? "true" : "false");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { var first = sidebar.querySelector("a"); if (first) first.focus(); }
    else if (wasOpen) toggle.focus();
    return wasOpen !== open;
  }
  document.addEventListener("click", function (evt) {
    var toggle = evt.target && evt.target.closest ? evt.target.closest("#sidebar-toggle") : null;
    if (!toggle) return;
    var sidebar = document.getElementById("sidebar");
    setSidebar(!(sidebar && sidebar.getAttribute("data-open") === "true"));
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
      if (target.id === "composer-input" && isStreaming()) return;
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
      if (setSidebar(false)) { evt.preventDefault(); return; } // first close the drawer
      var stop = document.getElementById("stop-button");
      if (stop) { evt.preventDefault(); stop.click(); }
    }
  });
})();
