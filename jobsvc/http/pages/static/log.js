// jobsvc's job page: exact truecolor, opening the section a #L<n> link points into, and the live tail
// of a running job's log. The tail polls the raw log with "Range: bytes=<offset>-" and renders what
// arrives by the rules of jobsvc/http/pages/ansi.py (the server renders the page's first part; keep the
// two in step). Text only ever goes in through textContent; classes come from fixed sets; colours
// are set from integers this script parsed. No inline script: the page's CSP allows this file only.
(function () {
  "use strict";

  var MAX_DEPTH = 32;
  var POLL_MS = 1000;
  var ACTIVE = ["created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running",
    "canceling", "scheduled"];
  var HEX = /^#[0-9a-f]{6}$/;
  var TOKEN = new RegExp(
    "(?<section>section_(?<action>start|end):(?<time>\\d+):(?<name>[A-Za-z0-9_.-]+)" +
    "(?<options>\\[\\w+=\\w+(?:, ?\\w+=\\w+)*\\])?\\r\\x1b\\[0K)" +
    "|(?<csi>\\x1b\\[(?<params>[0-?]*)(?<inter>[ -/]*)(?<final>[@-~])?)" +
    "|(?<string>\\x1b[\\]P_^X][^\\x07\\x1b]*(?:\\x07|\\x1b\\\\)?)" +
    "|(?<escape>\\x1b[ -/]*[0-~]?)" +
    "|(?<cr>\\r)" +
    "|(?<control>[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f])" +
    "|(?<text>[^\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9fs]+|s)",
    "g"
  );

  // --- colours: the same palette as ansi.py --------------------------------------------------------
  var CUBE = [0, 95, 135, 175, 215, 255];
  var PALETTE = [];
  (function () {
    for (var i = 0; i < 216; i++) PALETTE[16 + i] = [CUBE[Math.floor(i / 36)], CUBE[Math.floor(i / 6) % 6], CUBE[i % 6]];
    for (var g = 0; g < 24; g++) PALETTE[232 + g] = [8 + 10 * g, 8 + 10 * g, 8 + 10 * g];
  })();

  function nearest(rgb) {
    var best = 16, bestDistance = Infinity;
    for (var i = 16; i < 256; i++) {
      var c = PALETTE[i];
      var d = (c[0] - rgb[0]) * (c[0] - rgb[0]) + (c[1] - rgb[1]) * (c[1] - rgb[1]) + (c[2] - rgb[2]) * (c[2] - rgb[2]);
      if (d < bestDistance) { best = i; bestDistance = d; }
    }
    return best;
  }

  function hex(rgb) {
    return "#" + rgb.map(function (v) { return (v < 16 ? "0" : "") + v.toString(16); }).join("");
  }

  // --- SGR ----------------------------------------------------------------------------------------
  var PLAIN = { fg: null, bg: null, bold: false, italic: false, underline: false };

  function copy(style, changes) {
    var out = { fg: style.fg, bg: style.bg, bold: style.bold, italic: style.italic, underline: style.underline };
    for (var key in changes) out[key] = changes[key];
    return out;
  }

  function sameColour(a, b) {
    if (a === null || b === null || typeof a === "number" || typeof b === "number") return a === b;
    return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
  }

  function sameStyle(a, b) {
    return sameColour(a.fg, b.fg) && sameColour(a.bg, b.bg) && a.bold === b.bold && a.italic === b.italic &&
      a.underline === b.underline;
  }

  function number(text) {
    if (text === undefined || !/^[0-9]+$/.test(text)) return null;
    var digits = text.replace(/^0+/, "");
    return digits.length <= 9 ? parseInt(digits || "0", 10) : null;
  }

  function extended(values) {  // [colour or false, parameters used]
    var kind = values.length ? values[0] : null;
    if (kind === 5 && values.length >= 2) {
      return [values[1] !== null && values[1] <= 255 ? values[1] : false, 2];
    }
    if (kind === 2 && values.length >= 4) {
      var rgb = values.slice(1, 4);
      var ok = rgb.every(function (v) { return v !== null && v <= 255; });
      return [ok ? rgb : false, 4];
    }
    return [false, values.length];
  }

  function withColour(style, fg, colour) {
    return fg ? copy(style, { fg: colour }) : copy(style, { bg: colour });
  }

  function simple(style, code) {
    if (code === 0) return PLAIN;
    var flags = { 1: ["bold", true], 3: ["italic", true], 4: ["underline", true], 22: ["bold", false],
      23: ["italic", false], 24: ["underline", false] };
    if (flags[code]) { var change = {}; change[flags[code][0]] = flags[code][1]; return copy(style, change); }
    var ranges = [[30, true, 0], [90, true, 8], [40, false, 0], [100, false, 8]];
    for (var r = 0; r < ranges.length; r++) {
      var low = ranges[r][0];
      if (code >= low && code <= low + 7) return withColour(style, ranges[r][1], code - low + ranges[r][2]);
    }
    if (code === 39 || code === 49) return withColour(style, code === 39, null);
    return style;
  }

  function applySgr(style, params) {
    var fields = params.split(";");
    var i = 0;
    while (i < fields.length) {
      var part = fields[i];
      i += 1;
      var found;
      if (part.indexOf(":") !== -1) {
        var sub = part.split(":");
        var subCode = number(sub[0]);
        if (subCode === 38 || subCode === 48) {
          var args = sub.slice(1).map(number);
          if (args[0] === 2 && args.length >= 5) args = [2].concat(args.slice(2, 5));
          found = extended(args);
          if (found[0] !== false) style = withColour(style, subCode === 38, found[0]);
        } else if (subCode === 4) {
          style = copy(style, { underline: sub.length > 1 ? (number(sub[1]) !== 0 && number(sub[1]) !== null) : true });
        }
        continue;
      }
      var code = part === "" ? 0 : number(part);
      if (code === null) continue;
      if (code === 38 || code === 48) {
        found = extended(fields.slice(i, i + 4).map(number));
        i += found[1];
        if (found[0] !== false) style = withColour(style, code === 38, found[0]);
      } else {
        style = simple(style, code);
      }
    }
    return style;
  }

  // --- lines and sections ------------------------------------------------------------------------------
  function applyExact(root) {
    root.querySelectorAll("[data-fg], [data-bg]").forEach(function (el) {
      var fg = el.getAttribute("data-fg"), bg = el.getAttribute("data-bg");
      if (fg && HEX.test(fg)) el.style.color = fg;
      if (bg && HEX.test(bg)) el.style.backgroundColor = bg;
    });
  }

  function segmentNode(style, text) {
    if (sameStyle(style, PLAIN)) return document.createTextNode(text);
    var span = document.createElement("span");
    var classes = [];
    [["fg", style.fg], ["bg", style.bg]].forEach(function (pair) {
      var colour = pair[1];
      if (typeof colour === "number") {
        classes.push(pair[0] + "-" + colour);
      } else if (colour !== null) {
        classes.push(pair[0] + "-" + nearest(colour));
        span.setAttribute("data-" + pair[0], hex(colour));
      }
    });
    if (style.bold) classes.push("bold");
    if (style.italic) classes.push("italic");
    if (style.underline) classes.push("underline");
    span.className = classes.join(" ");
    span.textContent = text;
    return span;
  }

  function lineNode(tag, n, segments, extraClass, duration) {
    var el = document.createElement(tag);
    el.className = "line" + extraClass;
    el.id = "L" + n;
    var link = document.createElement("a");
    link.className = "ln";
    link.href = "#L" + n;
    link.textContent = String(n);
    var text = document.createElement("span");
    text.className = "lt";
    segments.forEach(function (segment) { text.appendChild(segmentNode(segment[0], segment[1])); });
    el.appendChild(link);
    el.appendChild(text);
    if (duration) el.appendChild(duration);
    return el;
  }

  function durationText(seconds) {
    seconds = Math.max(0, seconds);
    var hours = Math.floor(seconds / 3600), minutes = Math.floor(seconds % 3600 / 60), secs = seconds % 60;
    var two = function (v) { return (v < 10 ? "0" : "") + v; };
    return hours ? two(hours) + ":" + two(minutes) + ":" + two(secs) : two(minutes) + ":" + two(secs);
  }

  function time(digits) {
    return digits.length <= 15 ? parseInt(digits, 10) : 0;
  }

  function sectionName(raw) {
    return raw.toLowerCase().replace(/[^a-z0-9]/g, "-");
  }

  function options(raw) {
    var out = {};
    if (!raw) return out;
    raw.slice(1, -1).split(",").forEach(function (option) {
      var pair = option.trim().split("=");
      out[pair[0]] = pair.slice(1).join("=");
    });
    return out;
  }

  function Tail(log) {
    this.log = log;
    this.offset = parseInt(log.getAttribute("data-offset"), 10) || 0;
    this.number = parseInt(log.getAttribute("data-next-line"), 10) || 1;
    this.style = applySgr(PLAIN, log.getAttribute("data-sgr") || "");
    this.pending = new Uint8Array(0);
    this.decoder = new TextDecoder("utf-8");
    this.stack = [{ el: log, name: "" }];
    var self = this;
    log.querySelectorAll("details.open-section").forEach(function (details) {
      self.stack.push({ el: details, name: details.getAttribute("data-name"),
        start: parseInt(details.getAttribute("data-start"), 10) || 0,
        hide: details.getAttribute("data-hide-duration") === "true" });
    });
  }

  Tail.prototype.top = function () { return this.stack[this.stack.length - 1]; };

  Tail.prototype.flush = function (segments, header, atMarker, afterMarker) {
    if (header !== null) {
      var shown = segments.length ? segments : [[PLAIN, header.name]];
      header.el.appendChild(lineNode("summary", this.number, shown, " section-header", null));
    } else if (segments.length || !(atMarker || afterMarker)) {
      this.top().el.appendChild(lineNode("div", this.number, segments, "", null));
    } else {
      return;
    }
    this.number += 1;
  };

  Tail.prototype.close = function (name, end) {
    for (;;) {
      var section = this.stack.pop();
      var details = section.el;
      details.classList.remove("open-section");
      details.removeAttribute("data-name");
      details.removeAttribute("data-start");
      var summary = details.querySelector(":scope > summary");
      if (!section.hide && summary) {
        var badge = document.createElement("span");
        badge.className = "duration";
        badge.textContent = durationText(end - section.start);
        summary.appendChild(badge);
      }
      if (section.name === name) return;
    }
  };

  Tail.prototype.line = function (text) {
    var segments = [], header = null, afterMarker = false, match;
    TOKEN.lastIndex = 0;
    while ((match = TOKEN.exec(text)) !== null) {
      var g = match.groups;
      if (g.text !== undefined) {
        var last = segments[segments.length - 1];
        if (last && sameStyle(last[0], this.style)) last[1] += g.text;
        else segments.push([this.style, g.text]);
      } else if (g.csi !== undefined) {
        if (g.final === "m" && !g.inter && /^[0-9;:]*$/.test(g.params)) this.style = applySgr(this.style, g.params);
      } else if (g.cr !== undefined) {
        segments = [];
      } else if (g.section !== undefined) {
        var name = sectionName(g.name), opening = g.action === "start";
        var known = this.stack.slice(1).some(function (s) { return s.name === name; });
        if ((opening && this.stack.length > MAX_DEPTH) || (!opening && !known)) {
          afterMarker = true;  // dropped; but a line of markers alone is still no line
          continue;
        }
        this.flush(segments, header, true, afterMarker);
        segments = [];
        header = null;
        afterMarker = true;
        if (opening) {
          var opts = options(g.options);
          var details = document.createElement("details");
          details.className = "section open-section";
          details.setAttribute("data-name", name);
          details.setAttribute("data-start", String(time(g.time)));
          if (opts.hide_duration === "true") details.setAttribute("data-hide-duration", "true");
          if (opts.collapsed !== "true") details.open = true;
          this.top().el.appendChild(details);
          header = { el: details, name: name };
          this.stack.push({ el: details, name: name, start: time(g.time), hide: opts.hide_duration === "true" });
        } else {
          this.close(name, time(g.time));
        }
      }
      // escape sequences, strings and controls: dropped
    }
    this.flush(segments, header, false, afterMarker);
  };

  Tail.prototype.feed = function (bytes, final) {
    var all = new Uint8Array(this.pending.length + bytes.length);
    all.set(this.pending);
    all.set(bytes, this.pending.length);
    this.offset += bytes.length;
    var end = final ? all.length : all.lastIndexOf(10) + 1;
    this.pending = all.slice(end);
    if (end === 0) return;
    var lines = this.decoder.decode(all.subarray(0, end)).split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    var self = this;
    lines.forEach(function (line) { self.line(line.endsWith("\r") ? line.slice(0, -1) : line); });
    applyExact(this.log);
  };

  // --- the page -------------------------------------------------------------------------------------
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (!/^L[0-9]+$/.test(id)) return;
    var target = document.getElementById(id);
    if (!target) return;
    for (var el = target.parentElement; el; el = el.parentElement) {
      if (el.tagName === "DETAILS") el.open = true;
    }
    target.scrollIntoView({ block: "center" });
  }

  function finished(status) {
    var badge = document.querySelector("#job-status .ci-status");
    if (badge) badge.setAttribute("data-status", status);
    var note = document.createElement("p");
    note.className = "notice";
    note.id = "log-finished";
    note.textContent = "The job has finished (" + status + "). Reload the page to see all of it.";
    document.querySelector(".log-box").appendChild(note);
  }

  function follow(tail, raw) {
    var stopped = false;
    function next() { if (!stopped) window.setTimeout(poll, POLL_MS); }
    function poll() {
      fetch(raw, { headers: { Range: "bytes=" + tail.offset + "-" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          var status = response.headers.get("Job-Status");
          if (response.status === 200 || response.status === 206) {
            return response.arrayBuffer().then(function (buffer) {
              var bytes = new Uint8Array(buffer);
              if (response.status === 200) bytes = bytes.subarray(tail.offset);  // the whole log came back
              return [status, bytes];
            });
          }
          if (response.status !== 416) stopped = true;  // gone (erased, signed out): stop asking
          return [status, new Uint8Array(0)];
        })
        .then(function (answer) {
          var status = answer[0], done = status !== null && ACTIVE.indexOf(status) === -1;
          var bottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 40;
          if (answer[1].length || done) {
            tail.feed(answer[1], done);
            var empty = document.getElementById("log-empty");
            if (empty && tail.log.childNodes.length) empty.remove();
            if (bottom) window.scrollTo(0, document.documentElement.scrollHeight);
          }
          if (done) { stopped = true; finished(status); }
          next();
        })
        .catch(next);
    }
    next();
  }

  var log = document.getElementById("log");
  if (!log) return;
  applyExact(log);
  openTarget();
  window.addEventListener("hashchange", openTarget);
  if (log.classList.contains("live")) follow(new Tail(log), log.getAttribute("data-raw"));
})();
