/* The rules editor: add, remove and reorder rules and their conditions, show the inputs the chosen kind and action
   need, and ask for a reason before publishing rules the preview found harmful. The form itself previews through
   htmx (hx-post on #rules-form); after a structural change this file fires a "change" event so it previews again.
   New rules and conditions come from the server-rendered <template>s; keys only need to be unique on the page,
   since the order of the hidden "rule" and "rule-<key>-cond" fields is the order the server reads. */
(function () {
  "use strict";

  var form = document.getElementById("rules-form");
  if (!form) {
    return;
  }
  var list = document.getElementById("rule-list");
  var next = Number(form.getAttribute("data-next-key")) || 1;

  function fromTemplate(id, ruleKey, conditionKey) {
    var html = document.getElementById(id).innerHTML;
    html = html.split("__R__").join(ruleKey).split("__C__").join(conditionKey);
    var holder = document.createElement("ol");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }

  function newKey(prefix) {
    var key = prefix + String(next);
    next += 1;
    return key;
  }

  function renumber() {
    var rules = list.querySelectorAll(":scope > .rule");
    rules.forEach(function (rule, index) {
      rule.querySelector(".rule-position").textContent = String(index + 1);
    });
    document.getElementById("rules-empty").hidden = rules.length > 0;
  }

  function syncKind(condition) {
    var kind = condition.querySelector(".cond-kind").value;
    condition.querySelectorAll("[data-kinds]").forEach(function (group) {
      group.hidden = group.getAttribute("data-kinds").split(" ").indexOf(kind) < 0;
    });
  }

  function syncAction(rule) {
    var action = rule.querySelector(".rule-action").value;
    rule.querySelector(".rule-label-field").hidden = action !== "force" && action !== "forbid";
    rule.querySelector(".rule-tag-field").hidden = action !== "tag";
  }

  function previewAgain() {
    form.dispatchEvent(new Event("change", { bubbles: true }));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-act]");
    if (!button || !form.contains(button)) {
      return;
    }
    var rule = button.closest(".rule");
    var act = button.getAttribute("data-act");
    if (act === "add-rule") {
      var key = newKey("");
      var added = fromTemplate("rule-template", key, newKey("c"));
      list.appendChild(added);
      added.querySelector("input[type=text]").focus();
    } else if (act === "remove-rule") {
      var focusAfter = rule.nextElementSibling || rule.previousElementSibling;
      rule.remove();
      (focusAfter ? focusAfter.querySelector("input[type=text]") : form.querySelector("[data-act=add-rule]")).focus();
    } else if (act === "up" && rule.previousElementSibling) {
      rule.previousElementSibling.before(rule);
      button.focus();
    } else if (act === "down" && rule.nextElementSibling) {
      rule.nextElementSibling.after(rule);
      button.focus();
    } else if (act === "add-condition") {
      var condition = fromTemplate("condition-template", rule.getAttribute("data-key"), newKey("c"));
      rule.querySelector(".conditions").appendChild(condition);
      condition.querySelector("select").focus();
    } else if (act === "remove-condition") {
      var box = button.closest(".conditions-box");
      button.closest(".condition").remove();
      box.querySelector("[data-act=add-condition]").focus();
    } else {
      return;
    }
    renumber();
    previewAgain();
  });

  form.addEventListener("change", function (event) {
    var target = event.target;
    if (target.classList.contains("cond-kind")) {
      syncKind(target.closest(".condition"));
    } else if (target.classList.contains("rule-action")) {
      syncAction(target.closest(".rule"));
    }
  });

  var publish = document.querySelector('button[name="intent"][value="publish"]');
  var reason = document.getElementById("id_reason");
  if (publish && reason) {
    publish.addEventListener("click", function (event) {
      var worse = document.querySelector("#rules-preview [data-worse]");
      if (worse && !reason.value.trim()) {
        event.preventDefault();
        reason.setAttribute("aria-invalid", "true");
        document.getElementById("reason-help").textContent =
          "The preview shows these rules make the model worse: write why they should go live anyway.";
        reason.focus();
      }
    });
    reason.addEventListener("input", function () {
      reason.removeAttribute("aria-invalid");
    });
  }
})();
