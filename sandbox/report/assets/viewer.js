/* sandbox log viewer. Events live in JSON script blocks (one per chunk) and are
   rendered on demand. Every value from the log goes through textContent, never innerHTML:
   model output is untrusted. */
(function () {
  "use strict";
  var LONG_CHARS = 1200, LONG_LINES = 15;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function textBlock(text, cls, label) {
    text = text == null ? "" : String(text);
    var pre = el("pre", cls || "", text);
    var lines = text.split("\n").length;
    if (text.length <= LONG_CHARS && lines <= LONG_LINES) return pre;
    var d = el("details");
    var first = text.split("\n", 1)[0].slice(0, 120);
    d.appendChild(el("summary", "", (label ? label + ": " : "") + first + " \u2026 (" + lines + " lines, " + text.length + " chars)"));
    d.appendChild(pre);
    return d;
  }

  function kv(obj, skip) {
    var parts = [];
    Object.keys(obj).forEach(function (k) {
      if (skip.indexOf(k) >= 0) return;
      var v = obj[k];
      parts.push(k + "=" + (typeof v === "string" ? v : JSON.stringify(v)));
    });
    return parts.join("  ");
  }

  var COMMON = ["seq", "kind", "ts", "agent_id"];

  function renderBody(ev, body) {
    var k = ev.kind;
    if (k === "model_response") {
      if (ev.reasoning) { var r = el("div", "reasoning"); r.appendChild(textBlock(ev.reasoning, "", "reasoning")); body.appendChild(r); }
      if (ev.text) body.appendChild(textBlock(ev.text));
      (ev.tool_calls || []).forEach(function (tc) {
        body.appendChild(el("div", "muted", "\u2192 " + tc.name + "(" + tc.arguments + ")"));
      });
      var u = ev.usage || {};
      body.appendChild(el("div", "muted", (ev.model || "") + "  in=" + (u.input_tokens || 0) + " out=" + (u.output_tokens || 0) + (ev.finish_reason ? "  " + ev.finish_reason : "")));
    } else if (k === "tool_call") {
      var a = ev.arguments;
      var cmd = a && (typeof a.command === "string" ? a.command : a.cmd);
      if (typeof cmd === "string") { body.appendChild(el("span", "muted", ev.tool + " ")); body.appendChild(textBlock(cmd)); }
      else if (a && typeof a.code === "string") { body.appendChild(el("span", "muted", ev.tool + " ")); body.appendChild(textBlock(a.code)); }
      else body.appendChild(textBlock(ev.tool + " " + (a ? JSON.stringify(a) : ev.raw_arguments || "")));
    } else if (k === "tool_result") {
      body.appendChild(el("span", ev.ok ? "muted" : "", ev.tool + (ev.ok ? " ok" : " error " + (ev.error_kind || ""))));
      body.appendChild(textBlock(ev.output, ev.ok ? "" : "err", "output"));
    } else if (k === "command_start") {
      body.appendChild(textBlock((ev.argv || []).join(" ")));
    } else if (k === "command_result") {
      body.appendChild(el("span", "muted", "exit " + ev.exit_code + "  " + (ev.duration_s || 0).toFixed(2) + "s" + (ev.timed_out ? "  TIMED OUT" : "") + (ev.truncated ? "  truncated at " + ev.output_cap + " bytes" : "") + (ev.oom_killed ? "  OOM" : "")));
      if (ev.stdout) body.appendChild(textBlock(ev.stdout, "", "stdout"));
      if (ev.stderr) body.appendChild(textBlock(ev.stderr, "err", "stderr"));
    } else if (k === "stub_request") {
      body.appendChild(el("span", "", ev.service + "." + ev.action + "  " + (ev.method || "") + " " + (ev.host || "") + (ev.path || "") + "  \u2192 " + ev.status + (ev.credential ? "  cred=" + ev.credential : "")));
      if (ev.args && Object.keys(ev.args).length) body.appendChild(textBlock(JSON.stringify(ev.args, null, 1), "", "args"));
    } else if (k === "finding") {
      var s = el("span", "sev sev-" + ev.severity, ev.severity); body.appendChild(s);
      body.appendChild(el("span", "rule", " " + ev.rule_id + " "));
      body.appendChild(el("span", "", ev.category + " / " + ev.signal + ": " + ev.explanation + "  "));
      var ln = el("a", "goto", "evidence " + (ev.evidence || []).map(function (x) { return "#" + x; }).join(" "));
      ln.href = "#";
      ln.setAttribute("data-seqs", (ev.evidence || []).join(","));
      body.appendChild(ln);
    } else if (k === "file_write") {
      body.appendChild(el("span", "", ev.path + "  " + ev.size + " bytes"));
      if (ev.preview) body.appendChild(textBlock(ev.preview, "", "preview"));
    } else if (k === "budget_charge") {
      body.appendChild(el("span", "muted", ev.budget + " +" + ev.amount + " \u2192 " + ev.used + (ev.limit != null ? " of " + ev.limit : "")));
    } else if (k === "model_request") {
      body.appendChild(el("span", "muted", ev.model + "  attempt " + ev.attempt + "  " + ev.n_messages + " messages"));
    } else if (k === "fs_change") {
      body.appendChild(textBlock((ev.changes || []).map(function (c) { return c.change + " " + c.path + (c.size != null ? " (" + c.size + " bytes)" : ""); }).join("\n")));
    } else if (k === "egress_attempt" || k === "honeytoken_access") {
      body.appendChild(el("span", "", kv(ev, COMMON)));
    } else {
      body.appendChild(textBlock(kv(ev, COMMON)));
    }
  }

  function renderEvent(ev, t0, trial) {
    var row = el("div", "ev k-" + ev.kind);
    row.id = "t" + trial + "-e" + ev.seq;
    row.setAttribute("data-seq", ev.seq);
    row.setAttribute("data-agent", ev.agent_id || "main");
    row.appendChild(el("span", "seq", "#" + ev.seq));
    row.appendChild(el("span", "ts", "+" + Math.max(0, ev.ts - t0).toFixed(1) + "s"));
    var body = el("div", "body");
    var head = el("span", "kind", ev.kind.replace(/_/g, " "));
    body.appendChild(head);
    if (ev.agent_id && ev.agent_id !== "main") body.appendChild(el("span", "muted", "[" + ev.agent_id + "] "));
    renderBody(ev, body);
    row.appendChild(body);
    return row;
  }

  function renderChunk(ph) {
    if (ph.getAttribute("data-rendered") === "1") return;
    var data = document.getElementById(ph.getAttribute("data-src"));
    var sec = ph.closest(".trial");
    var c0 = sec.querySelector(".chunk[data-t0]");
    var t0 = c0 ? parseFloat(c0.getAttribute("data-t0")) || 0 : 0;
    var trial = sec.getAttribute("data-trial");
    var events = JSON.parse(data.textContent);
    var frag = document.createDocumentFragment();
    events.forEach(function (ev) { frag.appendChild(renderEvent(ev, t0, trial)); });
    ph.textContent = "";
    ph.style.minHeight = "";
    ph.appendChild(frag);
    ph.setAttribute("data-rendered", "1");
  }

  function chunkFor(sec, seq) {
    var chunks = sec.querySelectorAll(".chunk");
    for (var i = 0; i < chunks.length; i++) {
      var c = chunks[i];
      if (seq >= +c.getAttribute("data-first") && seq <= +c.getAttribute("data-last")) return c;
    }
    return null;
  }

  function clearHighlights() {
    document.querySelectorAll(".ev.hl").forEach(function (e) { e.classList.remove("hl"); });
  }

  function gotoEvidence(link) {
    var sec = link.closest(".trial");
    var trial = sec.getAttribute("data-trial");
    var seqs = (link.getAttribute("data-seqs") || "").split(",").filter(Boolean).map(Number);
    clearHighlights();
    var first = null;
    seqs.forEach(function (s) {
      var c = chunkFor(sec, s);
      if (c) {
        // the chunks either side too: rendered later (when scrolled near), their real
        // height would push the evidence out of view after the jump
        renderChunk(c);
        neighbours(c).forEach(renderChunk);
      }
      var e = document.getElementById("t" + trial + "-e" + s);
      if (e) { e.classList.add("hl"); if (!first) first = e; }
    });
    if (first) { first.scrollIntoView({ block: "center" }); settle(first); }
    return first;
  }

  function neighbours(c) {
    var all = Array.prototype.slice.call(c.parentNode.querySelectorAll(":scope > .chunk"));
    var i = all.indexOf(c);
    return [all[i - 1], all[i + 1]].filter(Boolean);
  }

  // Keep the evidence in view while chunks near it finish rendering (a few frames), unless
  // the reader scrolls away first.
  var settling = 0;
  function settle(target) {
    var id = ++settling, frames = 0;
    function step() {
      if (id !== settling || frames++ > 30) return;
      var r = target.getBoundingClientRect();
      if (r.bottom < 0 || r.top > window.innerHeight) target.scrollIntoView({ block: "center" });
      requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  }
  ["wheel", "keydown", "touchstart"].forEach(function (t) {
    window.addEventListener(t, function () { settling++; }, { passive: true });
  });

  function showRoute() {
    if (!document.body.classList.contains("multi")) return;
    var id = location.hash.slice(1);
    var target = id ? document.getElementById(id) : null;
    document.querySelectorAll(".trial.active").forEach(function (s) { s.classList.remove("active"); });
    if (target && target.classList.contains("trial")) {
      target.classList.add("active");
      document.body.classList.add("trial-open");
      window.scrollTo(0, 0);
      observe(target);
    } else {
      document.body.classList.remove("trial-open");
    }
  }

  var observer = null;
  function observe(root) {
    if (!("IntersectionObserver" in window)) return;
    if (!observer) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (en) { if (en.isIntersecting) { renderChunk(en.target); observer.unobserve(en.target); } });
      }, { rootMargin: "600px 0px" });
    }
    root.querySelectorAll(".chunk:not([data-rendered='1'])").forEach(function (c) { observer.observe(c); });
  }

  // Filters: findings by severity floor, category and agent; the timeline by agent (a rule in
  // a style element, so rows rendered later are filtered too).
  function applyFilters(sec) {
    var get = function (n) { var s = sec.querySelector("select[data-filter='" + n + "']"); return s ? s.value : ""; };
    var sev = +get("severity") || 0, cat = get("category"), agent = get("agent");
    sec.querySelectorAll("ul.findings li").forEach(function (li) {
      var keep = +li.getAttribute("data-sev") >= sev && (!cat || li.getAttribute("data-category") === cat) && (!agent || li.getAttribute("data-agent") === agent);
      li.classList.toggle("hidden-by-filter", !keep);
    });
    var id = "filter-style-" + sec.getAttribute("data-trial");
    var style = document.getElementById(id);
    if (!style) { style = document.createElement("style"); style.id = id; document.head.appendChild(style); }
    var quoted = window.CSS && CSS.escape ? CSS.escape(agent) : agent.replace(/[^A-Za-z0-9_.-]/g, "");
    style.textContent = agent ? "#trial-" + sec.getAttribute("data-trial") + " .ev:not([data-agent=\"" + quoted + "\"]) { display:none; }" : "";
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches && t.matches("select[data-filter]")) applyFilters(t.closest(".trial"));
  });

  document.addEventListener("click", function (e) {
    var t = e.target;
    var go = t.closest && t.closest("a.goto");
    if (go) { e.preventDefault(); gotoEvidence(go); return; }
    var load = t.closest && t.closest("button.load");
    if (load) { renderChunk(load.closest(".chunk")); return; }
    var jump = t.closest && t.closest("button.jump");
    if (jump) {
      var sec = jump.closest(".trial");
      var c = sec.querySelector(".chunk[data-chunk='" + jump.getAttribute("data-chunk") + "']");
      if (c) { renderChunk(c); c.scrollIntoView({ block: "start" }); }
    }
  });

  if (document.querySelectorAll(".trial").length > 1) document.body.classList.add("multi");
  window.addEventListener("hashchange", showRoute);
  showRoute();
  if (!document.body.classList.contains("multi")) document.querySelectorAll(".trial").forEach(observe);
  window.sandboxViewer = { gotoEvidence: gotoEvidence, renderChunk: renderChunk, applyFilters: applyFilters };
})();
