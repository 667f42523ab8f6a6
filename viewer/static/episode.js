// Episode page: frame scrubber with trace/gripper/object overlay, depth, reasoning, action plot.
"use strict";
(function () {
  const D = DATA, S = D.steps;
  const $ = id => document.getElementById(id);
  const TRACE = "#ff00ff", VISIBLE = "#00e000", HIDDEN = "#ffa500", OBJECT = "#ffd400";
  $("title").textContent = D.id;
  $("instruction").textContent = D.instruction || "";
  $("nav").append(el("a", {href: "../index.html"}, "overview"),
    D.prev ? el("a", {href: D.prev}, "← previous episode") : "",
    D.next ? el("a", {href: D.next}, "next episode →") : "",
    D.rerun ? el("a", {href: D.rerun, download: ""}, "Rerun recording (.rrd)") : "");
  for (const [fig, key] of [["wrist-fig", "wrist"], ["depth-fig", "depth"], ["stored-fig", "sensor_depth"]])
    if (!S.some(s => s[key])) $(fig).remove();

  const slider = $("slider"), frame = $("frame"), canvas = $("overlay");
  slider.max = S.length - 1;
  const DISPLAY_WIDTH = 512;
  let current = 0, timer = null;

  function drawOverlay(s) {
    const w = s.width || frame.naturalWidth, h = s.height || frame.naturalHeight;
    if (!w || !h) return;
    const scale = DISPLAY_WIDTH / w;
    frame.style.width = DISPLAY_WIDTH + "px"; frame.style.height = h * scale + "px";
    canvas.width = DISPLAY_WIDTH; canvas.height = Math.round(h * scale);
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineJoin = "round"; ctx.lineCap = "round";
    for (const [phrase, [x0, y0, x1, y1]] of s.objects) {
      ctx.strokeStyle = OBJECT; ctx.lineWidth = 2; ctx.setLineDash([]);
      ctx.strokeRect(x0 * scale, y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
      ctx.font = "13px sans-serif"; ctx.fillStyle = "rgba(0,0,0,0.6)";
      const tw = ctx.measureText(phrase).width;
      ctx.fillRect(x0 * scale, y0 * scale - 16, tw + 6, 16);
      ctx.fillStyle = OBJECT; ctx.fillText(phrase, x0 * scale + 3, y0 * scale - 4);
    }
    if (s.trace && s.trace.length) {   // trace points are 0-255 over the frame: v * size / 256
      const pts = s.trace.map(([x, y]) => [x * w / 256 * scale, y * h / 256 * scale]);
      ctx.strokeStyle = TRACE; ctx.fillStyle = TRACE; ctx.lineWidth = 3; ctx.setLineDash([]);
      ctx.beginPath(); pts.forEach(([x, y], k) => k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)); ctx.stroke();
      pts.forEach(([x, y], k) => { ctx.beginPath(); ctx.arc(x, y, k === pts.length - 1 ? 6 : 4, 0, 2 * Math.PI); ctx.fill(); });
    }
    if (s.gripper) {
      const [x, y] = [s.gripper[0] * scale, s.gripper[1] * scale];
      ctx.lineWidth = 3; ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI);
      if (s.visible === false) { ctx.setLineDash([4, 3]); ctx.strokeStyle = HIDDEN; ctx.stroke(); }
      else { ctx.setLineDash([]); ctx.strokeStyle = VISIBLE; ctx.stroke(); }
      ctx.setLineDash([]);
    }
  }

  function showReasoning(s) {
    const dl = $("reasoning");
    dl.replaceChildren();
    if (!s.tags.length) dl.append(el("dd", {className: "muted"}, "no reasoning stored (build with the reasoning stage)"));
    for (const [tag, value] of s.tags) {
      let dd = el("dd", {}, value);
      if (tag === "PLAN" && D.plan && s.plan_index !== null)
        dd = el("dd", {}, el("ol", {}, ...D.plan.map((item, k) =>
          el("li", {className: k < s.plan_index ? "done" : k === s.plan_index ? "current" : ""}, item))));
      dl.append(el("dt", {className: "tag-" + tag.replace(/ /g, "-").toLowerCase()}, tag), dd);
    }
  }

  function show(k) {
    current = Math.max(0, Math.min(S.length - 1, k));
    const s = S[current];
    slider.value = current;
    $("step-label").textContent = `step ${s.step} (${current + 1}/${S.length})` + (s.visible === false ? " · gripper hidden" : "");
    frame.onload = () => drawOverlay(s);
    frame.src = s.image;
    if (frame.complete && frame.naturalWidth) drawOverlay(s);
    for (const [id, key] of [["wrist", "wrist"], ["depth", "depth"], ["stored", "sensor_depth"]])
      if ($(id)) { $(id).src = s[key] || ""; $(id).style.visibility = s[key] ? "visible" : "hidden"; }
    showReasoning(s);
    document.querySelectorAll("#timeline .seg").forEach(seg =>
      seg.classList.toggle("on", +seg.dataset.a <= current && current <= +seg.dataset.b));
    if (plot) plot.redraw(false);
  }

  // Motion-label timeline: runs of equal labels, click to jump.
  const runs = [];
  S.forEach((s, k) => { const label = s.motion || "—";
    if (runs.length && runs[runs.length - 1].label === label) runs[runs.length - 1].b = k;
    else runs.push({label, a: k, b: k}); });
  const colourOf = label => label === "—" ? "#ccc" : PALETTE[[...label].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 7) % PALETTE.length];
  $("timeline").append(...runs.map(r => {
    const seg = el("div", {className: "seg", title: `${r.label} (steps ${S[r.a].step}–${S[r.b].step})`}, r.label);
    Object.assign(seg.dataset, {a: r.a, b: r.b});
    seg.style.flex = r.b - r.a + 1; seg.style.background = colourOf(r.label);
    seg.onclick = () => show(r.a);
    return seg;
  }));

  // Actions over the episode (normalised when stored: one scale for all dimensions).
  let plot = null;
  const key = S[0].action_normalized ? "action_normalized" : "action";
  if (S[0][key]) {
    const dims = S[0][key].length, xs = S.map(s => s.step);
    const names = [...Array(dims).keys()].map(d => dims === 7 && d === 6 ? "gripper" : `a${d}`);
    plot = new uPlot({
      title: key === "action" ? "action" : "action (normalised)", width: 560, height: 260,
      scales: {x: {time: false}}, axes: [{label: "step"}, {}],
      series: [{label: "step"}, ...names.map((n, d) => ({label: n, stroke: PALETTE[d % PALETTE.length], width: d === 6 ? 2.5 : 1.5}))],
      plugins: [markLines(() => [["", S[current].step, "#000"]])],
      cursor: {bind: {mousedown: (u, t, handler) => e => { handler(e); const i = u.cursor.idx; if (i !== null && i !== undefined) show(i); return null; }}},
    }, [xs, ...[...Array(dims).keys()].map(d => S.map(s => s[key] ? s[key][d] : null))], $("actions"));
  }

  fillTable($("rejected"), ["step", "stage", "reason"], D.rejections.map(r => [r.step ?? "whole episode", r.stage, r.reason]));
  if (!D.rejections.length) $("rejected").replaceWith(el("p", {className: "muted"}, "no step of this episode was rejected"));

  slider.oninput = () => show(+slider.value);
  $("prev").onclick = () => show(current - 1);
  $("next").onclick = () => show(current + 1);
  function play() {
    if (timer) { clearInterval(timer); timer = null; $("play").textContent = "▶ play"; return; }
    $("play").textContent = "❚❚ pause";
    timer = setInterval(() => { if (current >= S.length - 1) play(); else show(current + 1); }, 200);
  }
  $("play").onclick = play;
  document.addEventListener("keydown", e => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
    if (e.key === "ArrowRight") { show(current + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { show(current - 1); e.preventDefault(); }
    else if (e.key === " ") { play(); e.preventDefault(); }
    else if (e.key === "Home") show(0);
    else if (e.key === "End") show(S.length - 1);
  });
  show(0);
})();
