/* The annotate page's keyboard: label keys, arrows and Enter, s skip, u/Backspace undo, ? help.
   Buttons do the work (htmx posts their forms); this file only presses them and updates the counters. */
(function () {
  "use strict";

  var TYPING = /^(INPUT|TEXTAREA|SELECT)$/;

  function card() {
    return document.getElementById("annotate-card");
  }

  function labelButtons(root) {
    return root ? Array.prototype.slice.call(root.querySelectorAll(".label-button")) : [];
  }

  function isTyping(target) {
    return !!target && (TYPING.test(target.tagName) || target.isContentEditable);
  }

  function press(button) {
    if (button && !button.disabled) {
      button.click();
    }
  }

  function select(buttons, index) {
    buttons.forEach(function (button, i) {
      button.classList.toggle("is-selected", i === index);
    });
  }

  function moveSelection(root, step) {
    var buttons = labelButtons(root);
    if (!buttons.length) {
      return;
    }
    var current = buttons.findIndex(function (button) {
      return button.classList.contains("is-selected");
    });
    var next = current < 0 ? (step > 0 ? 0 : buttons.length - 1) : (current + step + buttons.length) % buttons.length;
    select(buttons, next);
  }

  function toggleHelp() {
    var help = document.getElementById("annotate-keys");
    if (help) {
      help.open = !help.open;
      if (help.open) {
        help.scrollIntoView({ block: "nearest" });
      }
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing || isTyping(event.target)) {
      return;
    }
    var key = event.key;
    if (key === "?") {
      event.preventDefault();
      if (!event.repeat) {
        toggleHelp();
      }
      return;
    }
    var root = card();
    /* A card htmx has not wired up yet would post as a plain form; wait for it. */
    if (!root || root.classList.contains("htmx-added")) {
      return;
    }
    var lower = key.length === 1 ? key.toLowerCase() : key;
    var label = labelButtons(root).find(function (button) {
      return button.dataset.key && button.dataset.key === lower;
    });
    var action = null;
    if (label) {
      action = function () { press(label); };
    } else if (key === "ArrowRight" || key === "ArrowDown" || key === "ArrowLeft" || key === "ArrowUp") {
      var step = key === "ArrowRight" || key === "ArrowDown" ? 1 : -1;
      action = function () { moveSelection(root, step); };
    } else if (key === "Enter") {
      /* A focused button or link answers Enter itself. */
      if (event.target.closest && event.target.closest("button, a, summary")) {
        return;
      }
      action = function () { press(root.querySelector(".label-button.is-selected")); };
    } else if (lower === "s") {
      action = function () { press(root.querySelector('[data-action="skip"]')); };
    } else if (lower === "u" || key === "Backspace") {
      action = function () { press(root.querySelector('[data-action="undo"]')); };
    }
    if (action === null) {
      return;
    }
    event.preventDefault();
    /* A held key repeats; one label per press, and the server is idempotent besides. */
    if (!event.repeat) {
      action();
    }
  });

  /* Counters outside the card, from the HX-Trigger header of every card response. */
  document.body.addEventListener("flywheel:progress", function (event) {
    var counts = event.detail || {};
    ["done", "total", "today"].forEach(function (name) {
      var element = document.querySelector('[data-counter="' + name + '"]');
      if (element && counts[name] !== undefined) {
        element.textContent = counts[name];
      }
    });
    var bar = document.querySelector("#annotate-progress .progress");
    if (bar && counts.percent !== undefined) {
      bar.setAttribute("aria-valuenow", counts.percent);
      bar.setAttribute("aria-valuetext", counts.done + " of " + counts.total + " done");
      bar.querySelector(".progress-bar").style.width = counts.percent + "%";
    }
  });

  /* A label, skip or undo that failed on the way (network, server error) leaves the card as it was; say so. */
  function failed(event) {
    var source = event.detail && event.detail.elt;
    var status = document.getElementById("annotate-status");
    if (!status || !source || !source.closest || !source.closest("#annotate-card form")) {
      return;
    }
    var note = document.createElement("p");
    note.className = "annotate-note is-error";
    note.textContent = event.type === "htmx:sendError"
      ? "Could not reach the server; nothing was saved. Press the key again when you are back online."
      : "The server could not do that (" + event.detail.xhr.status + "); nothing was saved. Try again, or reload the page.";
    status.replaceChildren(note);
  }
  document.body.addEventListener("htmx:responseError", failed);
  document.body.addEventListener("htmx:sendError", failed);

  /* Keep focus on the page after a new card arrives, so the next key press lands here; show the card's top. */
  var shown = card();
  document.body.addEventListener("htmx:afterSettle", function () {
    var root = card();
    if (!root || root === shown) {
      return;
    }
    shown = root;
    var active = document.activeElement;
    if (!active || active === document.body || !document.contains(active)) {
      root.focus({ preventScroll: true });
    }
    if (root.getBoundingClientRect().top < 0) {
      root.scrollIntoView({ block: "start" });
    }
  });
})();
