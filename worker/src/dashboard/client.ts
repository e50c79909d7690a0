// The dashboard's script, served as /dashboard.js: plain browser JavaScript in a string, so the
// Worker needs no build step for it. It fetches the reporting endpoints of this origin (with the
// stats token from sessionStorage, as a Bearer header) or /v1/public, and draws SVG charts.
export const CLIENT_JS = String.raw`(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var KEY = "agentsonar.statsToken";
  var MODE = document.body.getAttribute("data-mode");
  var WEEKS = 26;

  function h(tag, attrs, children) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function s(tag, attrs, children) {
    var node = document.createElementNS(SVG, tag);
    setAll(node, attrs);
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function setAll(node, attrs) {
    Object.keys(attrs || {}).forEach(function (name) {
      if (attrs[name] !== null && attrs[name] !== undefined) node.setAttribute(name, String(attrs[name]));
    });
  }
  function fmt(n) {
    if (n === null || n === undefined) return "–";
    return typeof n === "number" ? n.toLocaleString("en-US") : String(n);
  }
  function pct(x) {
    return (Math.round(x * 1000) / 10).toLocaleString("en-US") + "%";
  }
  function num(cell) {
    return typeof cell === "number" ? cell : 0;
  }
  function sum(values) {
    return values.reduce(function (a, b) { return a + b; }, 0);
  }
  function versionKey(v) {
    return v.split(".").map(function (p) { return ("00000" + (parseInt(p, 10) || 0)).slice(-5); }).join(".");
  }

  // -- talking to the collector -------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(KEY);
  }
  function request(path) {
    var headers = MODE === "private" ? { Authorization: "Bearer " + token() } : {};
    return fetch(path, { headers: headers, cache: "no-store" }).then(function (response) {
      if (response.status === 401) {
        var refused = new Error("refused");
        refused.unauthorized = true;
        throw refused;
      }
      if (!response.ok) throw new Error(path + " answered " + response.status);
      return response;
    });
  }
  function getJson(path) {
    return request(path).then(function (response) { return response.json(); });
  }
  function downloadButton(path, filename) {
    var button = h("button", { type: "button", class: "csv" }, ["Download CSV"]);
    button.addEventListener("click", function () {
      request(path).then(function (response) { return response.blob(); }).then(function (blob) {
        var url = URL.createObjectURL(blob);
        var link = h("a", { href: url, download: filename, hidden: "" });
        document.body.appendChild(link);
        link.click();
        link.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
      }).catch(showError);
    });
    return button;
  }

  // -- charts -----------------------------------------------------------------------------

  function niceMax(value) {
    if (value <= 0) return 1;
    var magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * magnitude >= value) return steps[i] * magnitude;
    return 10 * magnitude;
  }

  // Stacked weekly bars; percent: each bar is 100% of its total. line: a second series on its own axis.
  function stackedBars(title, labels, series, options) {
    options = options || {};
    // A narrower drawing on a phone keeps the 11px labels readable once scaled to the screen.
    var W = window.innerWidth < 600 ? 360 : 640, H = window.innerWidth < 600 ? 220 : 240;
    var L = 40, R = options.line ? 40 : 8, T = 10, B = 30;
    var pw = W - L - R, ph = H - T - B, n = labels.length;
    var totals = labels.map(function (_, i) { return sum(series.map(function (x) { return x.values[i] || 0; })); });
    var max = options.percent ? 1 : niceMax(Math.max.apply(null, totals.concat([0])));
    var chart = s("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title });
    for (var t = 0; t <= 4; t++) {
      var y = T + ph - (ph * t) / 4;
      chart.appendChild(s("line", { class: "axis", x1: L, x2: L + pw, y1: y, y2: y }));
      var tick = options.percent ? (25 * t) + "%" : fmt(Math.round((max * t) / 4));
      chart.appendChild(s("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, [tick]));
    }
    var band = pw / Math.max(n, 1), barWidth = Math.max(2, band * 0.72);
    var every = Math.max(1, Math.ceil(n / Math.floor(pw / 40)));
    labels.forEach(function (label, i) {
      var x = L + band * i + (band - barWidth) / 2, base = T + ph;
      series.forEach(function (one) {
        var value = one.values[i] || 0;
        var share = options.percent ? (totals[i] ? value / totals[i] : 0) : value / max;
        var height = share * ph;
        if (height <= 0) return;
        var shown = options.percent ? pct(share) + " (" + fmt(value) + ")" : fmt(value);
        chart.appendChild(s("rect", { class: one.cls, x: x, y: base - height, width: barWidth, height: height },
          [s("title", {}, [label + ", " + one.name + ": " + shown])]));
        base -= height;
      });
      if ((n - 1 - i) % every === 0) {
        chart.appendChild(s("text", { x: x + barWidth / 2, y: H - 10, "text-anchor": "middle" }, [label.slice(5)]));
      }
    });
    if (options.line) {
      var lineMax = niceMax(Math.max.apply(null, options.line.values.concat([0])));
      var points = options.line.values.map(function (v, i) {
        return [L + band * i + band / 2, T + ph - (v / lineMax) * ph];
      });
      chart.appendChild(s("path", { class: "line", d: points.map(function (p, i) { return (i ? "L" : "M") + p[0] + " " + p[1]; }).join(" ") }));
      points.forEach(function (p, i) {
        chart.appendChild(s("circle", { class: "dot", cx: p[0], cy: p[1], r: 2.5 },
          [s("title", {}, [labels[i] + ", " + options.line.name + ": " + fmt(options.line.values[i])])]));
      });
      for (var u = 0; u <= 4; u++) {
        chart.appendChild(s("text", { x: L + pw + 6, y: T + ph - (ph * u) / 4 + 4 }, [fmt(Math.round((lineMax * u) / 4))]));
      }
    }
    return chart;
  }

  function legend(series, line) {
    var items = series.map(function (one) {
      return h("li", {}, [h("span", { class: "swatch " + one.cls, "aria-hidden": "true" }), one.name]);
    });
    if (line) items.push(h("li", {}, [h("span", { class: "swatch line-swatch", "aria-hidden": "true" }), line.name + " (right axis)"]));
    return h("ul", { class: "legend" }, items);
  }

  function numbersTable(header, rows) {
    var table = h("table", {}, [
      h("thead", {}, [h("tr", {}, header.map(function (c) { return h("th", { scope: "col" }, [c]); }))]),
      h("tbody", {}, rows.map(function (row) {
        return h("tr", {}, row.map(function (c, i) { return h(i ? "td" : "th", i ? {} : { scope: "row" }, [fmt(c)]); }));
      })),
    ]);
    return h("details", { class: "numbers" }, [h("summary", {}, ["Show the numbers"]), h("div", { class: "table-wrap" }, [table])]);
  }

  function fill(id, nodes) {
    var body = document.querySelector("#" + id + " .body");
    body.replaceChildren.apply(body, nodes);
  }
  function emptyState(id, text) {
    fill(id, [h("p", { class: "empty" }, [text])]);
  }
  function tools(table, csvPath, csvName) {
    var parts = [table];
    if (csvPath) parts.unshift(downloadButton(csvPath, csvName));
    return h("div", { class: "tools" }, parts);
  }

  // Shares of one dimension per week: the top values by their latest week, the rest as "other".
  function shareSeries(weeks, pick, top) {
    // Each week's cells once (pick may build them), counted in objects without a prototype:
    // a value named __proto__ or constructor is data like any other.
    var picked = weeks.map(function (w) { return pick(w) || Object.create(null); });
    var last = picked[picked.length - 1];
    var totals = Object.create(null);
    picked.forEach(function (cells) {
      Object.keys(cells).forEach(function (v) { totals[v] = (totals[v] || 0) + num(cells[v]); });
    });
    var names = Object.keys(totals).filter(function (v) { return v !== "other" && v !== "(other)" && totals[v] > 0; });
    names.sort(function (a, b) { return num(own(last, b)) - num(own(last, a)) || totals[b] - totals[a] || (a < b ? -1 : 1); });
    var shown = names.slice(0, top);
    var isShown = Object.create(null);
    shown.forEach(function (v) { isShown[v] = true; });
    var series = shown.map(function (v, i) {
      return { name: v, cls: "c" + (i % 7), values: picked.map(function (cells) { return num(own(cells, v)); }) };
    });
    var rest = picked.map(function (cells) {
      return sum(Object.keys(cells).filter(function (v) { return !isShown[v]; }).map(function (v) { return num(cells[v]); }));
    });
    if (sum(rest) > 0) series.push({ name: "other", cls: "c7", values: rest });
    return series;
  }

  function own(cells, name) {
    return Object.prototype.hasOwnProperty.call(cells, name) ? cells[name] : undefined;
  }

  function shareSection(weeks, pick, options) {
    var series = shareSeries(weeks, pick, options.top);
    var labels = weeks.map(function (w) { return w.week; });
    var latest = weeks[weeks.length - 1];
    var latestTotal = sum(series.map(function (x) { return x.values[x.values.length - 1]; }));
    if (!series.length || !latestTotal) {
      return [h("p", { class: "empty" }, ["No " + options.noun + " in the closed weeks shown."])];
    }
    var lead = series.slice().sort(function (a, b) { return b.values[b.values.length - 1] - a.values[a.values.length - 1]; })[0];
    var summary = options.summary ? options.summary(series, latest, latestTotal)
      : lead.name + " leads with " + pct(lead.values[lead.values.length - 1] / latestTotal) + " of " + options.noun + " in " + latest.week + ".";
    // Columns: the series drawn, then any value not drawn.
    var picked = weeks.map(function (w) { return pick(w) || Object.create(null); });
    var columns = series.map(function (x) { return x.name; });
    var seen = Object.create(null);
    columns.forEach(function (v) { seen[v] = true; });
    picked.forEach(function (cells) {
      Object.keys(cells).forEach(function (v) { if (!seen[v]) { seen[v] = true; columns.push(v); } });
    });
    var rows = weeks.map(function (w, i) {
      return [w.week].concat(columns.map(function (name, k) {
        var cell = own(picked[i], name);
        return k < series.length ? series[k].values[i] : cell === undefined ? "–" : cell;
      }));
    });
    return [
      h("p", { class: "summary" }, [summary]),
      stackedBars(options.title, labels, series, { percent: true }),
      legend(series),
      options.note ? h("p", { class: "note" }, [options.note]) : null,
      tools(numbersTable(["week"].concat(columns), rows), options.csv, options.csvName),
    ].filter(Boolean);
  }

  // -- the maintainers' page ----------------------------------------------------------------

  function renderPrivate(stats, weekly, cohorts) {
    document.getElementById("as-of").textContent = stats.as_of === null
      ? "The hourly job has not run yet: no figures."
      : "Figures as of " + stats.as_of.replace("T", " ").replace(":00Z", " UTC") + " · "
        + fmt(stats.installs["30d"]) + " installs and " + fmt(stats.sessions["30d"]) + " sessions in the last 30 days";
    var weeks = weekly.weeks;
    var none = "No closed week yet. The first week closes the Monday after the collector's first event; the hourly job fills this in.";
    if (!weeks.length) {
      ["humans", "python", "adapter", "version", "platform", "cohorts"].forEach(function (id) { emptyState(id, none); });
      return;
    }
    var csv = "/v1/stats/weekly?weeks=" + WEEKS + "&format=csv";
    var labels = weeks.map(function (w) { return w.week; });

    var humans = [
      { name: "returning", cls: "c0", values: weeks.map(function (w) { return w.installs.returning; }) },
      { name: "one-shot", cls: "c1", values: weeks.map(function (w) { return w.installs.one_shot || 0; }) },
      { name: "other active", cls: "c2", values: weeks.map(function (w) {
        return Math.max(0, w.installs.active - w.installs.returning - (w.installs.one_shot || 0));
      }) },
    ];
    var sessions = { name: "sessions", values: weeks.map(function (w) { return w.sessions; }) };
    var last = weeks[weeks.length - 1];
    var settled = weeks.filter(function (w) { return w.installs.one_shot !== null; });
    var humanSummary = last.week + ": " + fmt(last.installs.active) + " active installs, " + fmt(last.installs.returning)
      + " returning (" + pct(last.installs.active ? last.installs.returning / last.installs.active : 0) + "), "
      + fmt(last.installs.new) + " new; " + fmt(last.sessions) + " sessions."
      + (settled.length ? " One-shot in " + settled[settled.length - 1].week + ": " + fmt(settled[settled.length - 1].installs.one_shot) + "." : "");
    fill("humans", [
      h("p", { class: "summary" }, [humanSummary]),
      stackedBars("Active installs per week: returning, one-shot and other; sessions", labels, humans, { line: sessions }),
      legend(humans, sessions),
      h("p", { class: "note" }, ["Returning: seen on 2 or more days in the 28 days to the week's end. One-shot: new, seen on one day in its first 14 (settled two weeks later)."]),
      tools(numbersTable(["week", "active", "returning", "one-shot", "new", "sessions"], weeks.map(function (w) {
        return [w.week, w.installs.active, w.installs.returning, w.installs.one_shot, w.installs.new, w.sessions];
      })), csv, "weekly.csv"),
    ]);

    fill("python", shareSection(weeks, function (w) {
      var cells = Object.create(null);
      Object.keys(w.by.python).forEach(function (v) { cells[v] = w.by.python[v].returning; });
      return cells;
    }, {
      top: 6, noun: "returning installs", csv: csv, csvName: "weekly.csv",
      title: "Share of returning installs per Python version, per week",
      summary: function (series, latest, total) {
        var versions = series.filter(function (x) { return x.name !== "other"; }).map(function (x) { return x.name; });
        versions.sort(function (a, b) { return versionKey(a) < versionKey(b) ? -1 : 1; });
        if (!versions.length) return "No Python version stands out of “other” yet.";
        var oldest = series.filter(function (x) { return x.name === versions[0]; })[0];
        var now = oldest.values[oldest.values.length - 1] / total;
        var shares = oldest.values.map(function (v, i) {
          var weekTotal = sum(series.map(function (x) { return x.values[i]; }));
          return weekTotal ? v / weekTotal : 0;
        });
        var peak = shares.indexOf(Math.max.apply(null, shares));
        return "Python " + oldest.name + ", the oldest seen, is " + pct(now) + " of returning installs in " + latest.week
          + (shares[peak] <= now ? "." : " (" + pct(shares[peak]) + " at its peak, " + labels[peak] + ").");
      },
    }));
    fill("adapter", shareSection(weeks, function (w) { return activeOf(w.by.adapter); }, {
      top: 5, noun: "active installs", csv: csv, csvName: "weekly.csv", title: "Share of active installs per adapter, per week",
    }));
    fill("version", shareSection(weeks, function (w) { return activeOf(w.by.version); }, {
      top: 6, noun: "active installs", csv: csv, csvName: "weekly.csv", title: "Share of active installs per SDK version, per week",
    }));
    var os = shareSection(weeks, function (w) { return activeOf(w.by.os); }, {
      top: 4, noun: "active installs", title: "Share of active installs per operating system, per week",
    });
    var arch = shareSection(weeks, function (w) { return activeOf(w.by.arch); }, {
      top: 3, noun: "active installs", csv: csv, csvName: "weekly.csv", title: "Share of active installs per CPU architecture, per week",
    });
    fill("platform", [h("div", { class: "pair" }, [h("div", {}, [h("h3", {}, ["Operating system"])].concat(os)), h("div", {}, [h("h3", {}, ["CPU architecture"])].concat(arch))])]);

    renderCohorts(cohorts.cohorts);
  }

  function activeOf(cells) {
    var out = Object.create(null);
    Object.keys(cells).forEach(function (v) { out[v] = cells[v].active; });
    return out;
  }

  function renderCohorts(list) {
    var withNew = list.filter(function (c) { return c.new > 0; });
    if (!list.length) return emptyState("cohorts", "No closed week yet.");
    var firstWeek = withNew.filter(function (c) { return c.active_after[0] !== null; });
    var rate = firstWeek.length ? sum(firstWeek.map(function (c) { return c.active_after[0]; })) / sum(firstWeek.map(function (c) { return c.new; })) : null;
    var header = h("tr", {}, [h("th", { scope: "col" }, ["new in"]), h("th", { scope: "col" }, ["new"])].concat(
      [1, 2, 3, 4, 5, 6, 7, 8].map(function (k) { return h("th", { scope: "col" }, ["+" + k + " wk"]); })));
    var rows = list.map(function (c) {
      return h("tr", {}, [h("th", { scope: "row" }, [c.week]), h("td", {}, [fmt(c.new)])].concat(c.active_after.map(function (n, k) {
        if (n === null) return h("td", { class: "cell", title: "week " + (k + 1) + " after has not closed" }, ["·"]);
        var share = c.new ? n / c.new : 0;
        return h("td", { class: "cell heat" + Math.min(5, Math.ceil(share * 5)), title: fmt(n) + " of " + fmt(c.new) }, [c.new ? pct(share) : "–"]);
      })));
    });
    fill("cohorts", [
      h("p", { class: "summary" }, [rate === null ? "No cohort has a closed week after it yet."
        : pct(rate) + " of new installs came back the week after (cohorts shown, weighted by size)."]),
      h("div", { class: "table-wrap" }, [h("table", { class: "cohort" }, [h("thead", {}, [header]), h("tbody", {}, rows)])]),
      h("p", { class: "note" }, ["Share of each week's new installs active 1 to 8 weeks later; · where that week has not closed."]),
      tools(numbersTable(["new in", "new", "+1", "+2", "+3", "+4", "+5", "+6", "+7", "+8"], list.map(function (c) {
        return [c.week, c.new].concat(c.active_after);
      })), "/v1/stats/cohorts?weeks=12&format=csv", "cohorts.csv"),
    ]);
  }

  // -- the public page ------------------------------------------------------------------------

  function renderPublic(data) {
    document.getElementById("as-of").textContent = data.as_of === null ? "No figures yet."
      : "Closed weeks through " + (data.weeks.length ? data.weeks[data.weeks.length - 1].week : "–") + ".";
    var weeks = data.weeks;
    var ids = ["humans", "python", "adapter", "version", "os", "arch"];
    if (!weeks.length) {
      ids.forEach(function (id) { emptyState(id, "No closed week yet."); });
      return;
    }
    var labels = weeks.map(function (w) { return w.week; });
    var active = [{ name: "active installs", cls: "c0", values: weeks.map(function (w) { return num(w.installs.active); }) }];
    var returning = { name: "returning installs", values: weeks.map(function (w) { return num(w.installs.returning); }) };
    var last = weeks[weeks.length - 1];
    fill("humans", [
      h("p", { class: "summary" }, [last.week + ": " + fmt(last.installs.active) + " active installs, " + fmt(last.installs.returning) + " returning."]),
      stackedBars("Active installs per week, and returning installs", labels, active, { line: returning }),
      legend(active, returning),
      tools(numbersTable(["week", "active", "returning", "new"], weeks.map(function (w) {
        return [w.week, w.installs.active, w.installs.returning, w.installs.new];
      })), "/v1/public?format=csv", "public.csv"),
    ]);
    ids.slice(1).forEach(function (dimension) {
      var shown = weeks.filter(function (w) { return w.by[dimension] !== null; });
      if (!shown.length) return emptyState(dimension, "Hidden: no closed week had 50 or more active installs.");
      fill(dimension, shareSection(shown, function (w) { return w.by[dimension]; }, {
        top: 6, noun: "active installs", title: "Share of active installs per " + dimension + ", per week",
        csv: "/v1/public?format=csv", csvName: "public.csv",
        note: shown.length < weeks.length ? "Weeks with fewer than 50 active installs are not shown." : null,
      }));
    });
  }

  // -- starting up ------------------------------------------------------------------------------

  function status(text, isError) {
    var node = document.getElementById("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }
  function showError(error) {
    if (error && error.unauthorized) return askForToken("That token was refused. Check the STATS_TOKEN of this collector.");
    status("Could not load the figures: " + (error && error.message ? error.message : error), true);
  }
  function askForToken(message) {
    sessionStorage.removeItem(KEY);
    document.getElementById("sections").hidden = true;
    document.getElementById("sign-out").hidden = true;
    var form = document.getElementById("login");
    form.hidden = false;
    document.getElementById("login-error").textContent = message || "";
    status("");
    document.getElementById("token").focus();
  }
  function loadPrivate() {
    status("Loading…");
    Promise.all([
      getJson("/v1/stats"),
      getJson("/v1/stats/weekly?weeks=" + WEEKS),
      getJson("/v1/stats/cohorts?weeks=12"),
    ]).then(function (answers) {
      document.getElementById("login").hidden = true;
      document.getElementById("sign-out").hidden = false;
      document.getElementById("sections").hidden = false;
      renderPrivate(answers[0], answers[1], answers[2]);
      status("");
    }).catch(showError);
  }

  if (MODE === "private") {
    document.getElementById("login").addEventListener("submit", function (event) {
      event.preventDefault();
      var input = document.getElementById("token");
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      loadPrivate();
    });
    document.getElementById("sign-out").addEventListener("click", function () { askForToken("Token forgotten."); });
    if (token()) loadPrivate(); else askForToken("");
  } else {
    status("Loading…");
    getJson("/v1/public?weeks=" + WEEKS).then(function (data) { renderPublic(data); status(""); }).catch(showError);
  }
})();
`;
