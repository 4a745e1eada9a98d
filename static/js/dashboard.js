/* The flywheel dashboard's charts. The numbers come from the page's JSON (json_script, so nothing in them is ever
   parsed as HTML); each chart is drawn only when the server put its canvas on the page, i.e. when it has data.
   Chart.js draws text on the canvas, never into the document. The tables under each chart hold the same numbers
   for people without JavaScript or a screen. */
(function () {
  "use strict";

  // Okabe–Ito: distinguishable with the common colour-vision deficiencies.
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F7F7F", "#000000"];
  var PROVENANCE_COLOURS = {
    human: "#0072B2",
    imported: "#56B4E9",
    gold: "#E69F00",
    adjudicated: "#CC79A7",
    llm_reviewed: "#009E73",
    llm_auto: "#8FD3B6",
    llm_pending: "#BDBDBD"
  };
  var GATE_STYLE = {
    published: { style: "star", colour: "#1a7f4b", radius: 9 },
    passed: { style: "circle", colour: "#3451b2", radius: 5 },
    failed: { style: "crossRot", colour: "#b42318", radius: 8 },
    none: { style: "circle", colour: "#9aa3b0", radius: 4 }
  };
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  function shortDay(iso) {
    var parts = iso.split("-");
    return MONTHS[parseInt(parts[1], 10) - 1] + " " + parseInt(parts[2], 10);
  }

  function sum(values) {
    return values.reduce(function (total, value) {
      return total + (value || 0);
    }, 0);
  }

  function baseOptions(extra) {
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
      scales: {
        x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 8 } },
        y: { beginAtZero: true, ticks: { precision: 0 } }
      }
    };
    return Object.assign(options, extra || {});
  }

  function stacked(options) {
    options.scales.x.stacked = true;
    options.scales.y.stacked = true;
    return options;
  }

  function dayTooltips(days) {
    return {
      callbacks: {
        title: function (items) {
          return items.length ? days[items[0].dataIndex] : "";
        }
      }
    };
  }

  function draw(id, build) {
    var canvas = document.getElementById(id);
    if (!canvas) {
      return;
    }
    var config = build();
    if (config) {
      new Chart(canvas, config);
    }
  }

  function labelsChart(data, days) {
    var labels = data.labels;
    var datasets = labels.keys
      .filter(function (entry) {
        return sum(labels.series[entry.key]) > 0;
      })
      .map(function (entry) {
        return {
          label: entry.name,
          data: labels.series[entry.key],
          backgroundColor: PROVENANCE_COLOURS[entry.key] || PALETTE[7]
        };
      });
    var options = stacked(baseOptions());
    options.plugins.tooltip = dayTooltips(data.days);
    return { type: "bar", data: { labels: days, datasets: datasets }, options: options };
  }

  function queueChart(data) {
    var now = data.queue.now;
    var options = baseOptions({ indexAxis: "y" });
    options.plugins.legend = { display: false };
    options.scales = {
      x: { beginAtZero: true, ticks: { precision: 0 } },
      y: { grid: { display: false } }
    };
    return {
      type: "bar",
      data: {
        labels: now.map(function (row) {
          return row.label;
        }),
        datasets: [
          {
            label: "Ready",
            data: now.map(function (row) {
              return row.count;
            }),
            backgroundColor: PALETTE[0]
          }
        ]
      },
      options: options
    };
  }

  function queueHistoryChart(data) {
    var history = data.queue.history;
    var datasets = history.reasons.map(function (reason, position) {
      return {
        label: reason.label,
        data: history.builds.map(function (build) {
          return build.counts[position];
        }),
        backgroundColor: PALETTE[position % PALETTE.length]
      };
    });
    var options = stacked(baseOptions());
    return {
      type: "bar",
      data: {
        labels: history.builds.map(function (build) {
          return build.at.slice(5) + " · " + build.model;
        }),
        datasets: datasets
      },
      options: options
    };
  }

  function modelsChart(data) {
    var versions = data.models;
    function gateOf(version) {
      return GATE_STYLE[version.published ? "published" : version.gate] || GATE_STYLE.none;
    }
    var options = baseOptions();
    options.scales.y = { min: 0, max: 1, ticks: { stepSize: 0.2 } };
    options.plugins.tooltip = {
      callbacks: {
        title: function (items) {
          var version = versions[items[0].dataIndex];
          return version.label + " · trained " + version.trained;
        },
        label: function (item) {
          var value = item.parsed.y;
          return item.dataset.label + ": " + (value === null ? "—" : value.toFixed(3));
        },
        afterBody: function (items) {
          var version = versions[items[0].dataIndex];
          var lines = [version.status_label];
          if (version.gate !== "none") {
            lines.push("Gate: " + version.gate + (version.overridden ? " (overridden)" : ""));
          }
          if (version.gate_reason) {
            lines.push(version.gate_reason);
          }
          if (version.holdout_size !== null) {
            lines.push("Holdout: " + version.holdout_size + " labels");
          }
          return lines;
        }
      }
    };
    return {
      type: "line",
      data: {
        labels: versions.map(function (version) {
          return version.label;
        }),
        datasets: [
          {
            label: "Macro-F1",
            data: versions.map(function (version) {
              return version.macro_f1;
            }),
            borderColor: "#3451b2",
            backgroundColor: "#3451b2",
            pointBackgroundColor: versions.map(function (version) {
              return version.gate === "none" && !version.published ? "#ffffff" : gateOf(version).colour;
            }),
            pointBorderColor: versions.map(function (version) {
              return gateOf(version).colour;
            }),
            pointStyle: versions.map(function (version) {
              return gateOf(version).style;
            }),
            pointRadius: versions.map(function (version) {
              return gateOf(version).radius;
            }),
            pointBorderWidth: 2,
            spanGaps: true
          },
          {
            label: "Accuracy",
            data: versions.map(function (version) {
              return version.accuracy;
            }),
            borderColor: "#E69F00",
            backgroundColor: "#E69F00",
            borderDash: [6, 4],
            pointRadius: 2,
            spanGaps: true
          }
        ]
      },
      options: options
    };
  }

  function llmChart(data, days) {
    var llm = data.llm;
    var options = baseOptions();
    options.scales.y = { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "Auto-accepted" } };
    options.scales.y1 = {
      position: "right",
      min: 0,
      max: 100,
      grid: { drawOnChartArea: false },
      ticks: {
        callback: function (value) {
          return value + "%";
        }
      },
      title: { display: true, text: "Accepted as-is" }
    };
    options.plugins.tooltip = dayTooltips(data.days);
    return {
      type: "bar",
      data: {
        labels: days,
        datasets: [
          {
            type: "line",
            label: "Reviewed and accepted as-is (%)",
            data: llm.share,
            yAxisID: "y1",
            borderColor: "#009E73",
            backgroundColor: "#009E73",
            pointRadius: 3,
            spanGaps: true
          },
          { type: "bar", label: "Auto-accepted", data: llm.auto, yAxisID: "y", backgroundColor: "#8FD3B6" }
        ]
      },
      options: options
    };
  }

  function annotatorsChart(data, days) {
    var people = data.annotators;
    var datasets = people.annotators.map(function (person, position) {
      return {
        label: person.name,
        data: people.series[person.key],
        backgroundColor: person.key === "others" ? "#BDBDBD" : PALETTE[position % PALETTE.length]
      };
    });
    var options = stacked(baseOptions());
    options.plugins.tooltip = dayTooltips(data.days);
    return { type: "bar", data: { labels: days, datasets: datasets }, options: options };
  }

  function predictionsChart(data, days) {
    var predictions = data.predictions;
    var options = baseOptions();
    options.plugins.tooltip = dayTooltips(data.days);
    return {
      type: "bar",
      data: {
        labels: days,
        datasets: [
          { type: "bar", label: "Served", data: predictions.served, backgroundColor: "#0072B2", order: 2 },
          {
            type: "line",
            label: "Low confidence",
            data: predictions.low_confidence,
            borderColor: "#E69F00",
            backgroundColor: "#E69F00",
            pointRadius: 2,
            order: 1
          },
          {
            type: "line",
            label: "Abstained",
            data: predictions.abstained,
            borderColor: "#D55E00",
            backgroundColor: "#D55E00",
            borderDash: [6, 4],
            pointRadius: 2,
            order: 0
          }
        ]
      },
      options: options
    };
  }

  function start() {
    var source = document.getElementById("dashboard-data");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var days = data.days.map(shortDay);
    Chart.defaults.font.family = window.getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#5b6675";
    draw("chart-labels", function () {
      return labelsChart(data, days);
    });
    draw("chart-queue", function () {
      return queueChart(data);
    });
    draw("chart-queue-history", function () {
      return queueHistoryChart(data);
    });
    draw("chart-models", function () {
      return modelsChart(data);
    });
    draw("chart-llm", function () {
      return llmChart(data, days);
    });
    draw("chart-annotators", function () {
      return annotatorsChart(data, days);
    });
    draw("chart-predictions", function () {
      return predictionsChart(data, days);
    });
    document.documentElement.setAttribute("data-dashboard-charts", "drawn");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
