/* The LLM review desk's keyboard: j/k move the focused row, x selects it, a/r accept/reject it, 1-9 correct it to
   the label in that position, Shift+A / Shift+R accept / reject the selected rows. Buttons do the work (htmx posts
   their forms); this file only presses them, and keeps the focused row across the table's swaps. */
(function () {
  "use strict";

  var TEXT_INPUT = /^(TEXTAREA|SELECT)$/;
  var NOT_TYPING = /^(checkbox|radio|button|submit|reset)$/;
  var focused = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#results tr[data-llm-id]"));
  }

  function isTyping(target) {
    if (!target || !target.tagName) {
      return false;
    }
    if (target.isContentEditable || TEXT_INPUT.test(target.tagName)) {
      return true;
    }
    return target.tagName === "INPUT" && !NOT_TYPING.test(target.type);
  }

  function focusRow(index, scroll) {
    var all = rows();
    if (!all.length) {
      focused = -1;
      return null;
    }
    focused = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (row, i) {
      row.classList.toggle("is-focused", i === focused);
    });
    var row = all[focused];
    if (scroll) {
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
    return row;
  }

  function current() {
    var all = rows();
    return focused >= 0 && focused < all.length ? all[focused] : focusRow(0, true);
  }

  function press(button) {
    if (button && !button.disabled) {
      button.click();
    }
  }

  function correct(row, position) {
    var select = row.querySelector("select[data-correct-select]");
    /* Option 0 is the "Correct to…" placeholder, so position n is option n. */
    if (!select || position >= select.options.length) {
      return;
    }
    select.selectedIndex = position;
    press(row.querySelector('[data-action="correct"]'));
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing || isTyping(event.target)) {
      return;
    }
    var key = event.key;
    var action = null;
    if (event.shiftKey && (key === "A" || key === "R")) {
      action = function () {
        press(document.querySelector('#llm-bulk [data-bulk="' + (key === "A" ? "accept" : "reject") + '"]'));
      };
    } else if (key === "j" || key === "k") {
      action = function () { focusRow(focused < 0 ? 0 : focused + (key === "j" ? 1 : -1), true); };
    } else if (key === "x") {
      action = function () {
        var row = current();
        var box = row && row.querySelector('input[type="checkbox"][name="ids"]');
        if (box && !box.disabled) {
          box.checked = !box.checked;
        }
      };
    } else if (key === "a" || key === "r") {
      action = function () {
        var row = current();
        if (row) {
          press(row.querySelector('[data-action="' + (key === "a" ? "accept" : "reject") + '"]'));
        }
      };
    } else if (/^[1-9]$/.test(key)) {
      action = function () {
        var row = current();
        if (row) {
          correct(row, Number(key));
        }
      };
    }
    if (action === null) {
      return;
    }
    event.preventDefault();
    if (!event.repeat) {
      action();
    }
  });

  /* Select every enabled row on the page, or none. */
  document.addEventListener("change", function (event) {
    if (!event.target.matches || !event.target.matches("[data-select-all]")) {
      return;
    }
    rows().forEach(function (row) {
      var box = row.querySelector('input[type="checkbox"][name="ids"]');
      if (box && !box.disabled) {
        box.checked = event.target.checked;
      }
    });
  });

  /* A click on a row makes it the focused one, so the keys act where the reviewer last pointed. */
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("#results tr[data-llm-id]");
    if (row) {
      focusRow(rows().indexOf(row), false);
    }
  });

  /* After an action the table is swapped: keep the focus on the same position (the next row, once the reviewed one
     left the pending list); move the keyboard focus there only when it was not in a field. */
  document.body.addEventListener("htmx:afterSettle", function () {
    if (focused < 0 || !document.getElementById("results")) {
      return;
    }
    var active = document.activeElement;
    var lost = !active || active === document.body || !document.contains(active) || !!active.closest("#results");
    focusRow(focused, lost);
  });
})();
